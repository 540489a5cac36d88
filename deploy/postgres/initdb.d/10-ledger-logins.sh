#!/usr/bin/env bash
# The postgres image runs this once, as the superuser, when its data directory is new (before the server
# accepts connections from the other services): it creates the ledger's roles and one login per service
# (../ledger-logins.sql says what each is granted). The login names and passwords come from the postgres
# service's environment (docker-compose.yml); an empty or missing one stops the initialisation, named.
set -Eeuo pipefail

arguments=()
for service in migrate writer projector sealer dashboard auditor demo retention eraser; do
    for part in login password; do
        name="LEDGER_${service^^}_${part^^}"
        if [[ -z ${!name:-} ]]; then
            echo "10-ledger-logins.sh: $name is not set: every ledger login needs a name and a password" >&2
            exit 1
        fi
        arguments+=(-v "${service}_${part}=${!name}")
    done
done

psql -X -q -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    "${arguments[@]}" -f "${LEDGER_LOGINS_SQL:-/llm-ledger/ledger-logins.sql}"
