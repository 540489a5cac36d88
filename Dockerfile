# The llm-ledger application image: the CLI with the dashboard (migrate, projector, sealer, dashboard, audit,
# retention, demo).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AGNO_TELEMETRY=false \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    LLM_LEDGER_HOME=/var/lib/llm-ledger

WORKDIR /app
COPY pyproject.toml README.md ./
COPY llm_ledger ./llm_ledger
# Installed the way the README installs it, with the dashboard extra (Streamlit) and the archive extra
# (pyarrow, for retention) so that one image runs every service of docker-compose.yml.
RUN pip install --no-cache-dir '.[dashboard,archive]' \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/llm-ledger --create-home ledger \
    && install -d -o 10001 -g 10001 /var/lib/llm-ledger/witness /var/lib/llm-ledger/verify-state \
        /var/lib/llm-ledger/archive
# The sealer's witness, verify's state and the retention archive are volumes mounted there: a new volume
# takes the directory's owner, so the non-root user can write them.
# A numeric user, so that an orchestrator checking runAsNonRoot can tell it is not root.
USER 10001:10001
EXPOSE 8501
ENTRYPOINT ["llm-ledger"]
CMD ["--help"]
