-- The ledger's logins, one per service, each granted only the ledger role it works as.
--
-- Run once by a superuser, before the first `llm-ledger db upgrade`: the compose stack's postgres service
-- runs it from docker-entrypoint-initdb.d (initdb.d/10-ledger-logins.sh, beside this file) when its data volume
-- is new. On a server of your own:
--   psql -X -v ON_ERROR_STOP=1 -d <database> -v migrate_login=... -v migrate_password=... ... -f ledger-logins.sql
-- (every variable below is required; psql stops at the first one missing, and exits 3, before making or
-- changing any login, for an empty one, a name given to two services, or a name that is a superuser or a
-- role but not a login). It can be run again: a login that exists gets the password given and its grants,
-- nothing is created twice.
--
-- Why the roles are created here and not only by the migrations: the migrating login is the database's
-- owner and nothing more (no superuser, no CREATEROLE), so it cannot create roles, and the logins can only
-- be granted roles that exist. The statements are the migrations' own (0001-0005, 0010, 0011: NOLOGIN, IF NOT EXISTS;
-- llm_ledger_ingest with BYPASSRLS, which needs the superuser this runs as), so the migrations then find
-- every role in place and only grant it privileges on the tables they create.

\set ON_ERROR_STOP on

SELECT format('CREATE ROLE %I NOLOGIN', name)
FROM unnest(ARRAY['llm_ledger_writer', 'llm_ledger_reader', 'llm_ledger_auditor', 'llm_ledger_projector',
                  'llm_ledger_sealer', 'llm_ledger_retention', 'llm_ledger_keyholder', 'llm_ledger_eraser']) AS name
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name)
\gexec
SELECT 'CREATE ROLE llm_ledger_ingest NOLOGIN BYPASSRLS'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'llm_ledger_ingest')
\gexec
-- A role made by a migration run without a superuser lacks it (0003 says so in a NOTICE): give it now.
ALTER ROLE llm_ledger_ingest BYPASSRLS;

-- One login per service: (login variable, password variable, ledger roles granted).
CREATE TEMPORARY TABLE ledger_login (login text NOT NULL, password text NOT NULL, roles text[] NOT NULL);
INSERT INTO ledger_login VALUES
    (:'migrate_login', :'migrate_password', ARRAY[]::text[]),
    (:'writer_login', :'writer_password', ARRAY['llm_ledger_writer', 'llm_ledger_ingest']),
    (:'projector_login', :'projector_password', ARRAY['llm_ledger_projector']),
    (:'sealer_login', :'sealer_password', ARRAY['llm_ledger_sealer']),
    -- The auditor for every tenant; the reader too, for the people its OpenID Connect login scopes to one.
    -- Inherited, not SET ROLE only (WITH INHERIT FALSE): every read of the ledger takes one of the two roles
    -- per transaction, but the dashboard's schema check reads the migrations' version table as the login.
    (:'dashboard_login', :'dashboard_password', ARRAY['llm_ledger_auditor', 'llm_ledger_reader']),
    (:'auditor_login', :'auditor_password', ARRAY['llm_ledger_auditor']),
    -- The demo writes as Focal does, then projects, seals and verifies what it wrote.
    (:'demo_login', :'demo_password',
     ARRAY['llm_ledger_writer', 'llm_ledger_ingest', 'llm_ledger_projector', 'llm_ledger_sealer',
           'llm_ledger_auditor']),
    -- Retention archives and drops old months as llm_ledger_retention, after the full verify it runs first
    -- as llm_ledger_auditor (migration 0010).
    (:'retention_login', :'retention_password', ARRAY['llm_ledger_retention', 'llm_ledger_auditor']),
    -- `llm-ledger erase` destroys data keys through llm_ledger_erase() and nothing else (migration 0011): it
    -- may not read a key's secret, so no encrypted text, and holds no DELETE; it reads its tenant's events
    -- (to count them, and the texts stored in plain it cannot erase).
    (:'eraser_login', :'eraser_password', ARRAY['llm_ledger_eraser']);

-- Refused before any login is made or changed, as an error (psql then exits 3): an empty name or password;
-- a name given to two services (each connects as a login of its own); and a name that is a role but not a
-- login, or a superuser (a ledger role, another application's group role, the superuser running this): the
-- ALTER ROLE below would make it a login with this password and strip its attributes.
DO $$
DECLARE
    refused text;
BEGIN
    IF EXISTS (SELECT FROM ledger_login WHERE login = '' OR password = '') THEN
        RAISE EXCEPTION 'ledger-logins.sql: a login name or password is empty: set every one';
    END IF;
    SELECT string_agg(DISTINCT login, ', ') INTO refused
    FROM (SELECT login FROM ledger_login GROUP BY login HAVING count(*) > 1) AS shared;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION 'ledger-logins.sql: % named for more than one service: give each its own login', refused;
    END IF;
    SELECT string_agg(login, ', ') INTO refused
    FROM ledger_login JOIN pg_roles ON rolname = login
    WHERE rolsuper OR NOT rolcanlogin;
    IF refused IS NOT NULL THEN
        RAISE EXCEPTION 'ledger-logins.sql: % is a superuser or a role that is not a login: name the login otherwise',
            refused;
    END IF;
END
$$;

SELECT format(
    CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = login)
         THEN 'ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD %L'
         ELSE 'CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD %L' END,
    login, password)
FROM ledger_login
\gexec
SELECT format('GRANT %I TO %I', role, login) FROM ledger_login, unnest(roles) AS role
\gexec

-- The migrating login owns the database: it creates the ledger's tables (PostgreSQL 15 and later let a
-- database's owner create in its public schema) and so owns them, which the application logins never do.
SELECT format('ALTER DATABASE %I OWNER TO %I', current_database(), :'migrate_login')
\gexec
SELECT format('ALTER SCHEMA public OWNER TO %I', :'migrate_login')
WHERE (SELECT nspowner FROM pg_namespace WHERE nspname = 'public') <> 'pg_database_owner'::regrole
\gexec
-- A ledger migrated before by a superuser (the compose file of earlier versions ran every service as one):
-- its tables, views and functions go to the migrating login, which the next migrations must own them as.
-- Tables take their identity sequences and indexes with them.
SELECT format('ALTER %s %I OWNER TO %I', CASE c.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, c.relname,
              :'migrate_login')
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v')
  AND c.relowner = current_user::regrole
  AND (c.relname LIKE 'llm\_ledger\_%'
       OR c.relname IN ('audit_executions', 'audit_attempts', 'audit_fallbacks', 'audit_incomplete',
                        'audit_content', 'audit_erasures'))
\gexec
-- The owner policies of 0011 (its SECURITY DEFINER functions run as the owner, whom FORCEd row-level security
-- subjects to the policies) name the login that migrated: they follow the tables to the migrating login.
SELECT format('ALTER POLICY %I ON %I TO %I', p.policyname, p.tablename, :'migrate_login')
FROM pg_policies p
WHERE p.schemaname = 'public'
  AND p.policyname IN ('llm_ledger_content_keys_owner', 'llm_ledger_erasures_owner', 'llm_ledger_events_owner_select')
  AND p.roles = ARRAY[current_user]::name[]
\gexec
SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, :'migrate_login')
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace AND p.proowner = current_user::regrole
  AND p.proname LIKE 'llm\_ledger\_%'
\gexec
DROP TABLE ledger_login;
