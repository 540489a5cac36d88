#!/usr/bin/env bash
# Writes an .env for docker-compose.yml with a new random password for each of its logins (the superuser
# and one per service) and a new digest secret, so that `docker compose` has every secret it requires. Refuses to overwrite a
# file: the passwords are set in the database when its volume is made, and a new .env would not match.
#   deploy/new-env.sh            writes ./.env
#   deploy/new-env.sh path/.env  writes there
set -Eeuo pipefail

target=${1:-.env}
if [[ -e $target ]]; then
    echo "new-env.sh: $target exists: not overwritten (the database keeps the passwords it was made with)" >&2
    exit 1
fi

password() {
    # 32 URL-safe characters from the kernel's random source.
    head -c 24 /dev/urandom | base64 | tr '+/' '-_'
}

umask 077
{
    echo "# docker-compose.yml's passwords, made by deploy/new-env.sh: a secret, keep it out of version control"
    echo "POSTGRES_PASSWORD=$(password)"
    for service in MIGRATE WRITER PROJECTOR SEALER DASHBOARD AUDITOR DEMO RETENTION ERASER; do
        echo "LEDGER_${service}_PASSWORD=$(password)"
    done
    # The writers' digest secret (as `llm-ledger audit digest-key --new` prints it): the base64 of 32 bytes.
    echo "LLM_LEDGER_DIGEST_KEY=$(head -c 32 /dev/urandom | base64)"
} >"$target"
echo "new-env.sh: wrote $target (mode 600)"
