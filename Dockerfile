# inbox-guard service image: slim Python, plain pip install of this project, non-root.
FROM python:3.12-slim

RUN useradd --system --uid 10001 --create-home --home-dir /data inbox-guard

WORKDIR /src
COPY pyproject.toml README.md ./
COPY inbox_guard ./inbox_guard
RUN pip install --no-cache-dir '.[postgresql]' && rm -rf /src

USER inbox-guard
WORKDIR /data
ENV INBOX_GUARD_CONFIG=/config/inbox-guard.toml
# Relative state and agenda paths in the config go here (a volume), not beside the
# read-only config.
ENV INBOX_GUARD_DATA=/data
ENTRYPOINT ["inbox-guard"]
CMD ["run"]
