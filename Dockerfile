# The llm-ledger application image: the CLI (migrations, demo, and later projector and dashboard).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AGNO_TELEMETRY=false \
    LLM_LEDGER_HOME=/var/lib/llm-ledger

WORKDIR /app
COPY pyproject.toml README.md ./
COPY llm_ledger ./llm_ledger
# Installed the way the README installs it.
RUN pip install --no-cache-dir . \
    && useradd --system --home-dir /var/lib/llm-ledger --create-home ledger
USER ledger
ENTRYPOINT ["llm-ledger"]
CMD ["--help"]
