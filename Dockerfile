# syncd container image: slim Python, non-root, state in a volume.
# Build: docker build -t syncd .
# Run:   docker run -v syncd-state:/var/lib/syncd -v ./syncd.toml:/etc/syncd/syncd.toml:ro \
#          -p 8080:8080 -e SYNCD_DAEMON__LISTEN=0.0.0.0:8080 syncd
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY syncd ./syncd
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN groupadd --system --gid 10001 syncd \
 && useradd --system --uid 10001 --gid syncd --home-dir /var/lib/syncd --shell /usr/sbin/nologin syncd \
 && mkdir -p /var/lib/syncd /etc/syncd && chown syncd:syncd /var/lib/syncd
COPY --from=build /install /usr/local
COPY etc/syncd.toml /etc/syncd/syncd.toml.example
ENV SYNCD_CONFIG=/etc/syncd/syncd.toml \
    SYNCD_DAEMON__STATE_DIR=/var/lib/syncd \
    PYTHONUNBUFFERED=1
USER syncd
VOLUME ["/var/lib/syncd"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,urllib.request,sys; h=os.environ.get('SYNCD_DAEMON__LISTEN','127.0.0.1:8080').replace('0.0.0.0','127.0.0.1'); sys.exit(0 if urllib.request.urlopen('http://'+h+'/healthz', timeout=4).status==200 else 1)"]
ENTRYPOINT ["syncd"]
CMD ["run"]
