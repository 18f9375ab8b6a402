# syncd container image: slim Python, non-root, state in a volume.
# Build: docker build -t syncd .
# Run:   docker run -d --name syncd --stop-timeout 60 -v syncd-state:/var/lib/syncd \
#          -v ./syncd.toml:/etc/syncd/syncd.toml:ro -p 8080:8080 \
#          -e SYNCD_DAEMON__LISTEN=0.0.0.0:8080 syncd
# The base image is pinned to a release; bump it deliberately (and rebuild for security fixes).
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: a change to syncd's code reuses it.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && pip install --no-cache-dir --prefix=/install -r requirements.txt
COPY README.md ./
COPY syncd ./syncd
RUN pip install --no-cache-dir --no-deps --prefix=/install .

FROM python:3.11.11-slim-bookworm
RUN groupadd --system --gid 10001 syncd \
 && useradd --system --uid 10001 --gid syncd --home-dir /var/lib/syncd --shell /usr/sbin/nologin syncd \
 && mkdir -p /var/lib/syncd /etc/syncd && chown syncd:syncd /var/lib/syncd
COPY --from=build /install /usr/local
COPY etc/syncd.toml /etc/syncd/syncd.toml.example
ENV SYNCD_CONFIG=/etc/syncd/syncd.toml \
    SYNCD_DAEMON__STATE_DIR=/var/lib/syncd \
    PYTHONUNBUFFERED=1
USER 10001:10001
VOLUME ["/var/lib/syncd"]
EXPOSE 8080
STOPSIGNAL SIGTERM
# Asks the daemon at the listen address its configuration names (file and SYNCD_* alike).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["syncd", "healthcheck"]
ENTRYPOINT ["syncd"]
CMD ["run"]
