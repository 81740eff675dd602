"""The example's safe_export: a .pt2 archive is read as JSON graph + raw tensors and run by an
interpreter of allow-listed pure ops; every way the red team ran code or I/O through it is refused."""

from __future__ import annotations

import json
import pickle
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parents[2] / "daemon" / "autoresearch" / "example"
sys.path.insert(0, str(EXAMPLE))
import safe_export  # noqa: E402


class Marker:
    """Unpickling this writes a file: proof that the loader ran code from the archive."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.path, "PWNED"))


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(256, 16)
        self.ln = torch.nn.LayerNorm(16)
        self.drop = torch.nn.Dropout(0.1)

    def forward(self, idx: Any) -> Any:
        x = self.drop(self.emb(idx) + self.emb(torch.arange(idx.shape[1])))
        x = torch.nn.functional.scaled_dot_product_attention(x[:, None], x[:, None], x[:, None], is_causal=True)[:, 0]
        return torch.nn.functional.gelu(self.ln(x)) @ self.emb.weight.T


def export(module: Any, path: Path) -> Path:
    module.eval()
    program = torch.export.export(module, (torch.zeros(2, 8, dtype=torch.long),))
    safe_export.save(program, str(path))
    return path


def rewrite(path: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    """Apply edit to the archive's {name under the top folder: bytes}, in place."""
    with zipfile.ZipFile(path) as z:
        top = z.namelist()[0].split("/", 1)[0]
        entries = {n.split("/", 1)[1]: z.read(n) for n in z.namelist()}
    edit(entries)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(f"{top}/{name}", data)
    return path


def edit_json(name: str, change: Callable[[Any], None]) -> Callable[[dict[str, bytes]], None]:
    def edit(entries: dict[str, bytes]) -> None:
        doc = json.loads(entries[name])
        change(doc)
        entries[name] = json.dumps(doc).encode()
    return edit


MODEL, WEIGHTS, CONSTANTS = "models/model.json", "data/weights/model_weights_config.json", \
    "data/constants/model_constants_config.json"


def refused(path: Path, match: str) -> None:
    with pytest.raises(safe_export.UnsafeProgram, match=match):
        safe_export.load(str(path))


def test_the_honest_program_runs_as_eager_and_has_no_pickle(tmp_path: Path) -> None:
    module = Tiny()
    path = export(module, tmp_path / "m.pt2")
    assert not any("sample_inputs" in n for n in zipfile.ZipFile(path).namelist())
    program = safe_export.load(str(path))
    assert program.input_shape == (2, 8)
    x = torch.randint(0, 256, (2, 8))
    with torch.no_grad():
        assert torch.equal(program(x), module(x))
    with pytest.raises(ValueError, match="input must be int64"):
        program(torch.zeros(3, 8, dtype=torch.long))


def test_a_pickle_in_sample_inputs_is_refused_unread(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = export(Tiny(), tmp_path / "m.pt2")
    rewrite(path, lambda e: e.update({"data/sample_inputs/model.pt": pickle.dumps(Marker(marker))}))
    refused(path, "unexpected entries")
    assert not marker.exists()
    torch.export.save(torch.export.export(Tiny().eval(), (torch.zeros(2, 8, dtype=torch.long),)),
                      str(tmp_path / "plain.pt2"))
    refused(tmp_path / "plain.pt2", "sample_inputs")  # torch.export.save's own archive: use safe_export.save


def test_use_pickle_weights_are_refused_unread(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = export(Tiny(), tmp_path / "m.pt2")

    def pickled(entries: dict[str, bytes]) -> None:
        config = json.loads(entries[WEIGHTS])
        meta = next(iter(config["config"].values()))
        meta["use_pickle"] = True
        entries[WEIGHTS] = json.dumps(config).encode()
        entries[f"data/weights/{meta['path_name']}"] = pickle.dumps(Marker(marker))
    refused(rewrite(path, pickled), "pickled payload")
    assert not marker.exists()


def test_opaque_constants_and_custom_objects_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = export(Tiny(), tmp_path / "m.pt2")

    def opaque(entries: dict[str, bytes]) -> None:
        entries[CONSTANTS] = json.dumps({"config": {"obj": {"path_name": "opaque_obj_0", "is_param": False,
                                                            "use_pickle": True, "tensor_meta": None}}}).encode()
        entries["data/constants/opaque_obj_0"] = pickle.dumps(Marker(marker))
    refused(rewrite(path, opaque), "pickled payload")
    assert not marker.exists()

    def custom_input(doc: Any) -> None:
        doc["graph_module"]["signature"]["input_specs"][0] = {
            "custom_obj": {"arg": {"name": "p_emb_weight", "class_fqn": "x"}, "custom_obj_name": "obj"}}
    path = export(Tiny(), tmp_path / "c.pt2")
    refused(rewrite(path, edit_json(MODEL, custom_input)), "kind 'custom_obj' refused")
    path = export(Tiny(), tmp_path / "v.pt2")
    refused(rewrite(path, edit_json(MODEL, lambda d: d["graph_module"]["graph"].update(
        custom_obj_values={"obj": {"name": "obj", "class_fqn": "x"}}))), "custom objects are refused")


def test_from_file_reading_the_eval_data_is_refused(tmp_path: Path) -> None:
    def read_eval(doc: Any) -> None:
        nodes = doc["graph_module"]["graph"]["nodes"]
        nodes.insert(0, {"target": "torch.ops.aten.from_file.default", "name": "leak", "metadata": {},
                         "inputs": [{"name": "filename", "arg": {"as_string": "/eval/eval.bin"}, "kind": 1},
                                    {"name": "shared", "arg": {"as_none": True}, "kind": 1},
                                    {"name": "size", "arg": {"as_int": 49153}, "kind": 1}],
                         "outputs": [{"as_tensor": {"name": "leak"}}]})
    path = export(Tiny(), tmp_path / "m.pt2")
    refused(rewrite(path, edit_json(MODEL, read_eval)), "aten.from_file.default is not allowed")


class Unlisted(torch.nn.Module):
    def forward(self, idx: Any) -> Any:
        return torch.zeros(*idx.shape, 256) + torch.rand(256)


class HigherOrder(torch.nn.Module):
    def forward(self, idx: Any) -> Any:
        logits = torch.zeros(*idx.shape, 256)
        return torch.cond(idx.sum() > 0, lambda t: t + 1, lambda t: t - 1, (logits,))


class Mutating(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("seen", torch.zeros(2, 8, dtype=torch.long))

    def forward(self, idx: Any) -> Any:
        self.seen.add_(idx)  # state across calls: what an earlier batch held
        return torch.zeros(*idx.shape, 256) + self.seen[..., None]


@pytest.mark.parametrize(("module", "match"), [
    (Unlisted(), "aten.rand.default is not allowed"),
    (HigherOrder(), "higher_order.cond is not allowed"),
    (Mutating(), "aten.add_.Tensor is not allowed"),
])
def test_unlisted_higher_order_and_mutating_programs_are_refused(tmp_path: Path, module: Any, match: str) -> None:
    refused(export(module, tmp_path / "m.pt2"), match)


def test_random_dropout_and_bad_payloads_are_refused(tmp_path: Path) -> None:
    def train_mode(doc: Any) -> None:
        for node in doc["graph_module"]["graph"]["nodes"]:
            for named in node["inputs"]:
                if node["target"].endswith("dropout.default") and named["name"] == "train":
                    named["arg"] = {"as_bool": True}
                if named["name"] == "dropout_p":
                    named["arg"] = {"as_float": 0.5}
    path = export(Tiny(), tmp_path / "m.pt2")
    refused(rewrite(path, edit_json(MODEL, train_mode)), "draws random numbers")

    def too_big(config: Any) -> None:
        meta = config["config"]["emb.weight"]["tensor_meta"]
        meta["sizes"][0] = {"as_int": 10**6}
    path = export(Tiny(), tmp_path / "b.pt2")
    refused(rewrite(path, edit_json(WEIGHTS, too_big)), "reaches past")
    path = export(Tiny(), tmp_path / "s.pt2")
    refused(rewrite(path, edit_json(MODEL, lambda d: d["graph_module"]["signature"]["output_specs"].append(
        {"buffer_mutation": {"arg": {"name": "gelu"}, "buffer_name": "emb.weight"}}))), "mutate nothing")
    path = export(Tiny(), tmp_path / "e.pt2")
    refused(rewrite(path, lambda e: e.update({"extra/code.py": b"print(1)"})), "unexpected entries")
    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    refused(tmp_path / "junk.pt2", "not a readable")


def test_malformed_json_is_refused_cleanly(tmp_path: Path) -> None:
    path = export(Tiny(), tmp_path / "m.pt2")
    refused(rewrite(path, edit_json(MODEL, lambda d: d["graph_module"]["signature"].update(
        input_specs=[{"parameter": 7}] * 4))), "malformed")


def test_an_older_torch_archive_with_pickled_weights_is_refused(tmp_path: Path) -> None:
    """torch < 2.9 wrote serialized_state_dict.pt (a pickle) next to the JSON graph."""
    path = tmp_path / "old.pt2"
    with zipfile.ZipFile(path, "w") as z:
        for name in ("serialized_exported_program.json", "serialized_state_dict.pt", "version"):
            z.writestr(f"old/{name}", b"{}")
    refused(path, "not a raw-weight .pt2 archive")
