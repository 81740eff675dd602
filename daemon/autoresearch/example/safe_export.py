"""Save and load a torch.export program without running any of its code. READ-ONLY for the agent.

torch.export.load is not safe on an archive a training run wrote: it unpickles sections of it
(sample inputs, `use_pickle` payloads, opaque constants) and retries with weights_only=False, and
the graph it rebuilds may call any operator, `aten.from_file` included. This module reads the
archive itself, as data: the JSON graph (models/model.json) and raw little-endian tensor bytes
(data/weights, data/constants), nothing else. Any other entry, a pickled payload, a custom object,
a dynamic shape, a mutation, or an operator outside ALLOWED_OPS (pure tensor arithmetic: no I/O,
no random numbers, no in-place or `out=` variants, no higher-order ops) refuses the whole archive
with UnsafeProgram. The graph is then run by a small interpreter (Program) that calls only the
allow-listed operators, on tensors it built; the model never sees a path or a file.

save() writes what load() accepts: torch.export.save's archive minus the pickled sample inputs.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import zipfile
from collections.abc import Callable
from typing import Any

import torch

MAX_JSON_BYTES = 64 * 1024 * 1024

# Pure, deterministic tensor operators, by their serialized names. A higher-order op (cond,
# while_loop, wrap_with_*...) carries a subgraph or a callable: none is vetted, so none is here.
_OPS = """
abs.default add.Scalar add.Tensor addmm.default alias.default amax.default amin.default any.dim
arange.default arange.start arange.start_step argmax.default baddbmm.default bitwise_and.Tensor
bitwise_not.default bitwise_or.Tensor bmm.default cat.default chunk.default clamp.default clamp.Tensor
clamp_max.default clamp_min.default clone.default contiguous.default cos.default cumsum.default
detach.default div.Scalar div.Tensor div.Tensor_mode dropout.default einsum.default embedding.default
eq.Scalar eq.Tensor erf.default exp.default expand.default flatten.using_ints floor.default full.default
full_like.default gather.default ge.Scalar ge.Tensor gelu.default group_norm.default gt.Scalar gt.Tensor
index.Tensor index_select.default layer_norm.default le.Scalar le.Tensor linear.default log.default
log_softmax.int logical_and.default logical_not.default logical_or.default lt.Scalar lt.Tensor
masked_fill.Scalar masked_fill.Tensor matmul.default max.dim maximum.default mean.default mean.dim
min.dim minimum.default mm.default mul.Scalar mul.Tensor native_layer_norm.default ne.Scalar ne.Tensor
neg.default numpy_T.default one_hot.default ones.default ones_like.default permute.default
pow.Scalar pow.Tensor_Scalar pow.Tensor_Tensor reciprocal.default relu.default repeat.default
reshape.default rms_norm.default roll.default round.default rsqrt.default rsub.Scalar rsub.Tensor
scaled_dot_product_attention.default select.int sigmoid.default sign.default silu.default sin.default
slice.Tensor softmax.int softplus.default split.Tensor split_with_sizes.default sqrt.default square.default
squeeze.dim squeeze.dims stack.default sub.Scalar sub.Tensor sum.default sum.dim_IntList t.default
tanh.default transpose.int tril.default triu.default type_as.default unbind.int unflatten.int
unsqueeze.default view.default where.self where.ScalarOther where.ScalarSelf zeros.default zeros_like.default
_assert_tensor_metadata.default _softmax.default _log_softmax.default _to_copy.default _unsafe_view.default
to.dtype to.dtype_layout
"""
ALLOWED_OPS = frozenset(f"torch.ops.aten.{name}" for name in _OPS.split())

# Operators that are pure only with some arguments: dropout and attention dropout draw random numbers.
_ARG_RULES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "torch.ops.aten.dropout.default": lambda kw: kw.get("train") is False,
    "torch.ops.aten.scaled_dot_product_attention.default": lambda kw: kw.get("dropout_p", 0.0) == 0.0,
}

# schema.ScalarType numbers (torch/_export/serde/schema.py) of the dtypes a model may hold.
_DTYPES = {1: torch.uint8, 2: torch.int8, 3: torch.int16, 4: torch.int32, 5: torch.int64, 6: torch.float16,
           7: torch.float32, 8: torch.float64, 12: torch.bool, 13: torch.bfloat16}
_LAYOUT_STRIDED, _MEMORY_FORMATS = 7, {1: torch.contiguous_format, 4: torch.preserve_format}
_NAME = re.compile(r"[A-Za-z0-9_]{1,200}")
_FLOATS = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


class UnsafeProgram(ValueError):
    """The archive holds something this loader does not run: a pickle, an object, an unlisted op."""


def _expect(ok: bool, why: str) -> None:
    if not ok:
        raise UnsafeProgram(why)


def save(program: Any, path: str) -> None:
    """torch.export.save, then drop the one pickled entry it always writes (the sample inputs)."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".export-{os.getpid()}.pt2")  # torch wants .pt2
    torch.export.save(program, tmp)
    try:
        with zipfile.ZipFile(tmp) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                if "/data/sample_inputs/" not in info.filename:
                    dst.writestr(info.filename, src.read(info))
    finally:
        os.unlink(tmp)


class _Archive:
    """The entries of a .pt2 zip, all under one top folder, each read at most once."""

    def __init__(self, path: str) -> None:
        try:
            self.zip = zipfile.ZipFile(path)
            names = self.zip.namelist()
        except (OSError, zipfile.BadZipFile) as exc:
            raise UnsafeProgram(f"not a readable .pt2 archive: {exc}") from exc
        _expect(len(names) == len(set(names)), "duplicate entries in the archive")
        tops = {n.split("/", 1)[0] for n in names}
        _expect(len(tops) == 1 and all("/" in n for n in names), "entries must share one top folder")
        self.top = tops.pop()
        self.unread = {n.split("/", 1)[1] for n in names}

    def read(self, name: str, limit: int | None = None) -> bytes:
        _expect(name in self.unread, f"missing or repeated entry {name}")
        self.unread.discard(name)
        info = self.zip.getinfo(f"{self.top}/{name}")
        _expect(limit is None or info.file_size <= limit, f"{name} is too large")
        return self.zip.read(info)

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name, MAX_JSON_BYTES))
        except (ValueError, UnicodeDecodeError) as exc:
            raise UnsafeProgram(f"{name} is not JSON: {exc}") from exc


def _int(value: Any) -> int:
    _expect(isinstance(value, dict) and set(value) == {"as_int"} and type(value["as_int"]) is int,
            f"only static sizes are supported, not {value!r}")
    return int(value["as_int"])


def _tensor_from_bytes(data: bytes, meta: dict[str, Any], where: str) -> torch.Tensor:
    _expect(isinstance(meta, dict) and meta.get("dtype") in _DTYPES, f"{where}: unsupported dtype")
    _expect(meta.get("layout") == _LAYOUT_STRIDED, f"{where}: only strided tensors")
    dtype = _DTYPES[meta["dtype"]]
    sizes, strides = [_int(s) for s in meta.get("sizes", [])], [_int(s) for s in meta.get("strides", [])]
    offset = _int(meta.get("storage_offset", {"as_int": 0}))
    _expect(len(sizes) == len(strides) and min(sizes + strides + [offset], default=0) >= 0, f"{where}: bad shape")
    item = torch.empty((), dtype=dtype).element_size()
    _expect(len(data) % item == 0, f"{where}: {len(data)} bytes is not a whole number of elements")
    numel = len(data) // item
    if 0 not in sizes:
        last = offset + sum((n - 1) * s for n, s in zip(sizes, strides, strict=True))
        _expect(last < numel, f"{where}: shape {sizes} reaches past its {numel} stored elements")
    flat = torch.frombuffer(bytearray(data), dtype=dtype) if numel else torch.zeros(0, dtype=dtype)
    return flat.as_strided(sizes, strides, offset) if numel else torch.zeros(sizes, dtype=dtype)


def _payloads(archive: _Archive, folder: str, prefix: str) -> dict[str, torch.Tensor]:
    config = archive.json(f"data/{folder}/model_{folder}_config.json")
    _expect(isinstance(config, dict) and isinstance(config.get("config"), dict), f"bad {folder} config")
    tensors, files = {}, {}
    for fqn, meta in config["config"].items():
        _expect(isinstance(meta, dict) and meta.get("use_pickle") is False, f"{fqn}: pickled payload refused")
        name = meta.get("path_name")
        _expect(isinstance(name, str) and name.startswith(prefix) and _NAME.fullmatch(name) is not None,
                f"{fqn}: payload {name!r} is not a raw tensor")
        if name not in files:
            files[name] = archive.read(f"data/{folder}/{name}")
        tensors[fqn] = _tensor_from_bytes(files[name], meta.get("tensor_meta"), fqn)
    return tensors


def load(path: str) -> Program:
    """The program in a .pt2 archive, checked; UnsafeProgram if it holds anything but graph and tensors."""
    archive = _Archive(path)
    _expect({"models/model.json", "data/weights/model_weights_config.json"} <= archive.unread,
            "not a raw-weight .pt2 archive: torch >= 2.9 writes one with safe_export.save; older torch pickles weights")
    _expect(archive.read("archive_format", 64).strip() == b"pt2", "not a pt2 archive")
    _expect(archive.read("byteorder", 64).strip() == b"little" and sys.byteorder == "little", "not little-endian")
    for name in ("archive_version", ".data/version", ".data/serialization_id"):
        if name in archive.unread:
            archive.read(name, 64)  # plain version strings: nothing in them is used
    weights = _payloads(archive, "weights", "weight_")
    constants = _payloads(archive, "constants", "tensor_")
    model = archive.json("models/model.json")
    _expect(not archive.unread, f"unexpected entries in the archive: {sorted(archive.unread)}")
    try:
        return Program.from_json(model, {**weights, **constants})
    except (AttributeError, KeyError, TypeError) as exc:  # a field of the wrong JSON type somewhere
        raise UnsafeProgram(f"malformed models/model.json: {exc!r}") from exc


class Program:
    """A checked graph of allow-listed operators: called with one (batch, seq_len) int64 tensor."""

    def __init__(self, nodes: list[tuple[Any, list[Any], dict[str, Any], list[Any]]], tensors: dict[str, Any],
                 input_name: str, input_shape: tuple[int, ...], output: str) -> None:
        self.nodes, self.tensors, self.input_name, self.output = nodes, tensors, input_name, output
        self.input_shape = input_shape

    @classmethod
    def from_json(cls, model: Any, payloads: dict[str, torch.Tensor]) -> Program:
        _expect(isinstance(model, dict) and isinstance(model.get("graph_module"), dict), "bad model.json")
        module = model["graph_module"]
        graph, signature = module.get("graph"), module.get("signature")
        _expect(isinstance(graph, dict) and isinstance(signature, dict), "bad model.json")
        _expect(not model.get("range_constraints"), "dynamic shapes are not supported")
        for key in ("custom_obj_values", "sym_int_values", "sym_bool_values", "sym_float_values"):
            _expect(not graph.get(key), f"{key}: symbolic values and custom objects are refused")
        tensors, user = _inputs(signature, graph, payloads)
        meta = graph.get("tensor_values", {}).get(user)
        _expect(isinstance(meta, dict) and _DTYPES.get(meta.get("dtype")) == torch.int64, "input must be int64")
        shape = tuple(_int(s) for s in meta.get("sizes", []))
        defined = set(tensors) | {user}
        nodes = [_node(n, defined) for n in graph.get("nodes", [])]
        outs = signature.get("output_specs")
        _expect(isinstance(outs, list) and len(outs) == 1 and set(outs[0]) == {"user_output"},
                "the program must return one tensor and mutate nothing")
        out = _tensor_name(outs[0]["user_output"].get("arg"))
        _expect(out in defined, "the output is not computed by the graph")
        return cls(nodes, tensors, user, shape, out)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape) != self.input_shape or x.dtype != torch.int64:
            raise ValueError(f"input must be int64 {self.input_shape}, not {x.dtype} {tuple(x.shape)}")
        env: dict[str, Any] = {**self.tensors, self.input_name: x}
        for op, args, kwargs, outputs in self.nodes:
            result = op(*[_bind(a, env) for a in args], **{k: _bind(v, env) for k, v in kwargs.items()})
            if all(o is None for o in outputs):  # an assertion (_assert_tensor_metadata): nothing to keep
                continue
            if len(outputs) == 1 and isinstance(outputs[0], str):
                result = [result]
            elif len(outputs) == 1:  # one list of tensors (unbind, split, chunk)
                outputs, result = outputs[0], list(result)
            if len(outputs) != len(result):
                raise ValueError(f"{op} returned {len(result)} values, the graph expects {len(outputs)}")
            env.update((name, value) for name, value in zip(outputs, result, strict=True) if name is not None)
        out = env[self.output]
        if not isinstance(out, torch.Tensor):
            raise ValueError("the program did not return a tensor")
        return out


class _Ref(str):
    """The name of a tensor computed earlier in the graph (as opposed to a constant string argument)."""


def _bind(arg: Any, env: dict[str, Any]) -> Any:
    if isinstance(arg, _Ref):
        return env[arg]
    return [_bind(a, env) for a in arg] if isinstance(arg, list) else arg


def _tensor_name(arg: Any) -> str:
    _expect(isinstance(arg, dict) and set(arg) == {"as_tensor"} and isinstance(arg["as_tensor"], dict),
            f"expected a tensor, got {arg!r}")
    name = arg["as_tensor"].get("name")
    _expect(isinstance(name, str) and _NAME.fullmatch(name) is not None, f"bad tensor name {name!r}")
    return str(name)


def _inputs(signature: dict[str, Any], graph: dict[str, Any], payloads: dict[str, torch.Tensor],
            ) -> tuple[dict[str, torch.Tensor], str]:
    """The graph's inputs bound to stored tensors, and the name of the one user input."""
    specs, args = signature.get("input_specs"), graph.get("inputs")
    _expect(isinstance(specs, list) and isinstance(args, list) and len(specs) == len(args), "bad input specs")
    tensors, users = {}, []
    for spec in specs:
        _expect(isinstance(spec, dict) and len(spec) == 1, f"bad input spec {spec!r}")
        (kind, body), = spec.items()
        if kind == "user_input":
            users.append(_tensor_name(body.get("arg")))
            continue
        key = {"parameter": "parameter_name", "buffer": "buffer_name",
               "tensor_constant": "tensor_constant_name"}.get(kind)
        _expect(key is not None, f"input of kind {kind!r} refused (custom objects, tokens, constants)")
        fqn = body.get(key)
        _expect(fqn in payloads, f"{fqn!r} is not a stored raw tensor")
        name = body.get("arg", {}).get("name")
        _expect(isinstance(name, str) and _NAME.fullmatch(name) is not None, f"bad input name {name!r}")
        tensors[name] = payloads[fqn]
    _expect(len(users) == 1, f"the program must take one input, not {len(users)}")
    _expect({_tensor_name(a) for a in args} == {*tensors, *users}, "graph inputs do not match the signature")
    return tensors, users[0]


def _node(node: Any, defined: set[str]) -> tuple[Any, list[Any], dict[str, Any], list[Any]]:
    _expect(isinstance(node, dict) and isinstance(node.get("target"), str), f"bad node {node!r}")
    target = node["target"]
    _expect(target in ALLOWED_OPS, f"operator {target} is not allowed")
    args, kwargs = [], {}
    for named in node.get("inputs", []):
        _expect(isinstance(named, dict) and isinstance(named.get("name"), str), f"{target}: bad argument")
        value = _argument(named.get("arg"), defined, target)
        if named.get("kind") == 2:
            kwargs[named["name"]] = value
        else:
            _expect(not kwargs, f"{target}: positional argument after a keyword")
            args.append(value)
    rule = _ARG_RULES.get(target)
    if rule is not None:
        names = [n["name"] for n in node["inputs"]]
        _expect(rule(dict(zip(names, args + list(kwargs.values()), strict=True))), f"{target}: draws random numbers")
    outputs: list[Any] = []
    for out in node.get("outputs", []):
        if isinstance(out, dict) and set(out) == {"as_tensors"} and isinstance(out["as_tensors"], list):
            outputs.append([_tensor_name({"as_tensor": t}) for t in out["as_tensors"]])
        elif isinstance(out, dict) and set(out) == {"as_none"}:
            outputs.append(None)
        else:
            outputs.append(_tensor_name(out))
    flat = [n for o in outputs for n in (o if isinstance(o, list) else [o]) if n is not None]
    _expect(not (set(flat) & defined) and len(flat) == len(set(flat)), f"{target}: a tensor is defined twice")
    defined.update(flat)
    op = torch.ops.aten
    for part in target.removeprefix("torch.ops.aten.").split("."):
        op = getattr(op, part)
    return op, args, kwargs, outputs


def _argument(arg: Any, defined: set[str], target: str) -> Any:
    _expect(isinstance(arg, dict) and len(arg) == 1, f"{target}: bad argument {arg!r}")
    (kind, value), = arg.items()
    if kind == "as_none":
        return None
    if kind in ("as_tensor", "as_optional_tensor"):
        if kind == "as_optional_tensor" and set(value) == {"as_none"}:
            return None
        name = _tensor_name({"as_tensor": value.get("as_tensor", value)})
        _expect(name in defined, f"{target}: {name} is used before it is computed")
        return _Ref(name)
    if kind in ("as_tensors", "as_optional_tensors"):
        _expect(isinstance(value, list), f"{target}: bad tensor list")
        return [_argument({"as_optional_tensor": v} if kind == "as_optional_tensors" else {"as_tensor": v},
                          defined, target) for v in value]
    scalar = {"as_int": int, "as_bool": bool, "as_string": str}
    if kind in scalar:
        _expect(type(value) is scalar[kind], f"{target}: bad {kind}")
        return value
    if kind in ("as_ints", "as_bools", "as_strings"):
        _expect(isinstance(value, list) and all(type(v) is scalar[kind[:-1]] for v in value), f"{target}: bad {kind}")
        return list(value)
    if kind == "as_float":
        return _float(value, target)
    if kind == "as_floats":
        _expect(isinstance(value, list), f"{target}: bad floats")
        return [_float(v, target) for v in value]
    if kind in ("as_sym_int", "as_sym_ints"):
        return _int(value) if kind == "as_sym_int" else [_int(v) for v in value]
    if kind == "as_scalar_type":
        _expect(value in _DTYPES, f"{target}: dtype {value!r} refused")
        return _DTYPES[value]
    if kind == "as_memory_format":
        _expect(value in _MEMORY_FORMATS, f"{target}: memory format {value!r} refused")
        return _MEMORY_FORMATS[value]
    if kind == "as_layout":
        _expect(value == _LAYOUT_STRIDED, f"{target}: only strided tensors")
        return torch.strided
    if kind == "as_device":
        _expect(isinstance(value, dict) and value.get("type") == "cpu", f"{target}: the evaluator runs on the CPU")
        return torch.device("cpu")
    raise UnsafeProgram(f"{target}: argument of kind {kind} refused (graphs, objects, operators, symbols)")


def _float(value: Any, target: str) -> float:
    if isinstance(value, str):
        _expect(value in _FLOATS, f"{target}: bad float {value!r}")
        return _FLOATS[value]
    _expect(type(value) in (int, float), f"{target}: bad float {value!r}")
    return float(value)
