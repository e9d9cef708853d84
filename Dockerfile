# syntax=docker/dockerfile:1
# image-updater container image.
#   docker build -t image-updater:0.1.0 .
#   docker run --rm -v $PWD/config.yaml:/etc/image-updater/config.yaml:ro -e GIT_TOKEN -e WEBHOOK_SECRET \
#     -p 8080:8080 image-updater:0.1.0            # the config must listen on 0.0.0.0:8080
#   docker run --rm ... image-updater:0.1.0 run -c /etc/image-updater/config.yaml --once --dry-run

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a virtualenv with image-updater and its dependencies (wheels only, no compiler needed) -------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ONLY_BINARY=:all:
WORKDIR /src
# exact versions with hashes (requirements/*.lock, refreshed by scripts/lock.sh): the dependencies into the
# venv, the build backend into a venv of its own that builds our wheel
COPY requirements/runtime.lock requirements/build.lock ./requirements/
RUN python -m venv /opt/image-updater \
 && /opt/image-updater/bin/pip install --require-hashes --no-deps -r requirements/runtime.lock \
 && python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/build.lock
COPY pyproject.toml README.md ./
COPY image_updater ./image_updater
# the example repository is packaged into the wheel (`image-updater demo`)
COPY examples/gitops-repo ./examples/gitops-repo
# pip and setuptools build the venv, then leave it: the runtime needs neither (about 25 MB with bytecode)
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
 && /opt/image-updater/bin/pip install --no-deps /tmp/dist/image_updater-*.whl \
 && /opt/image-updater/bin/pip check \
 && /opt/image-updater/bin/python -m pip uninstall --yes --quiet pip setuptools \
 && rm -f /opt/image-updater/bin/pip* /opt/image-updater/bin/Activate.ps1 \
 && find /opt/image-updater -name __pycache__ -prune -exec rm -rf {} + \
 && /opt/image-updater/bin/python -m compileall -q /opt/image-updater/lib \
 && /opt/image-updater/bin/image-updater version

# --- runtime: the same Python, git and ssh for the sources, tini to reap git's orphaned children ---------
# ~/.ssh is created here because ssh tries to create it on every run, which a read-only root filesystem
# (Kubernetes) would refuse with a warning.
# Our packages come without manuals, documentation (the copyright files stay) and translations, and apt's
# downloaded .debs and package caches are removed (a base without docker-clean would keep ~95 MB of them).
FROM ${PYTHON_IMAGE}
RUN printf '%s\n' 'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' \
      'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
      'path-exclude=/usr/share/locale/*' 'path-exclude=/usr/share/lintian/*' \
      >/etc/dpkg/dpkg.cfg.d/image-updater-nodoc \
 && apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates tini \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \
 && groupadd --system --gid 10001 image-updater \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/image-updater --create-home \
      --shell /usr/sbin/nologin image-updater \
 && install -d -o 10001 -g 10001 -m 0750 /var/cache/image-updater /etc/image-updater \
 && install -d -o 10001 -g 10001 -m 0700 /home/image-updater/.ssh
COPY --from=build /opt/image-updater /opt/image-updater
ENV PATH=/opt/image-updater/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/image-updater
USER 10001:10001
WORKDIR /home/image-updater
EXPOSE 8080
# Probes the port the daemon listens on by default; adjust if http.listen uses another port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
# tini as PID 1 forwards SIGTERM to image-updater (which then stops gracefully) and reaps the processes
# git and ssh leave behind; the command itself is image-updater.
ENTRYPOINT ["tini", "--", "image-updater"]
CMD ["run", "-c", "/etc/image-updater/config.yaml"]
