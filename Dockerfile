# The autoresearch daemon's image: the daemon in a venv (/opt/autoresearch), run as a non-root user,
# talking to the host's Docker engine through the mounted socket (access through the socket's group:
# compose's group_add with DOCKER_GID). See compose.yaml and docs/operations.md.
#
# Build it with scripts/build-daemon-image.sh: it builds the wheels on the host (the project, its
# dependencies, and the CPU torch the bundled example trains with) into build/docker/, and this file
# installs them with `pip --no-index`, so the build itself needs no network and no registry.
# BASE_IMAGE is any Debian-like image with python3 >= 3.11 and its venv module: python:3.11-slim-bookworm
# where a registry is reachable, or a local debootstrap base (scripts/make-base-image.sh) where none is.
# The Python minor version of the base must match the host's that built the wheels (cp311 here).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# Dependencies in a stage of their own: they change rarely, so this layer stays cached while the
# project changes; the wheel files do not end up in the final image.
FROM ${BASE_IMAGE} AS deps
COPY build/docker/deps/ /tmp/deps/
RUN python3 -m venv /opt/autoresearch \
 && /opt/autoresearch/bin/pip install --no-cache-dir --no-index --find-links /tmp/deps /tmp/deps/*.whl

FROM ${BASE_IMAGE}
# git drives the research repo; tini is PID 1 (it forwards SIGTERM and reaps what the process runner's
# training leaves behind). The debootstrap base has both; an upstream slim image gets them from Debian.
RUN if ! command -v git >/dev/null || ! command -v tini >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends git tini ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system --gid 10001 autoresearch \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/autoresearch --create-home \
      --shell /usr/sbin/nologin autoresearch
COPY --from=deps /opt/autoresearch /opt/autoresearch
COPY build/docker/project/ /tmp/project/
COPY daemon-image/entrypoint.sh /usr/local/bin/autoresearch-entrypoint
RUN /opt/autoresearch/bin/pip install --no-cache-dir --no-index --no-deps /tmp/project/*.whl \
 && rm -rf /tmp/project \
 && ln -s /opt/autoresearch/bin/autoresearch /usr/local/bin/autoresearch \
 && chmod 0755 /usr/local/bin/autoresearch-entrypoint \
 && autoresearch --help >/dev/null

# Caches go to /tmp so that any uid works (compose may run the image as the host user's uid).
ENV PATH=/opt/autoresearch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/.cache/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    AUTORESEARCH_REPO=/research
USER 10001:10001
WORKDIR /home/autoresearch
# SIGTERM (docker stop) makes the daemon stop its run, record it as interrupted and exit 0; give it
# `docker stop -t 30` / compose's stop_grace_period (the run's own stop takes docker.stop_timeout_s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "autoresearch-entrypoint"]
