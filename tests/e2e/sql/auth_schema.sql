-- The `auth` schema the auth playbooks and NoETL's POST /api/auth/session/validate read.
-- Column names follow the queries in noetl 4.26.0 (server/api/database/service.py,
-- server/api/auth/check_access.py). Idempotent: applied at every e2e start.
CREATE SCHEMA IF NOT EXISTS auth AUTHORIZATION noetl;
SET ROLE noetl;

CREATE TABLE IF NOT EXISTS auth.users (
    user_id       BIGSERIAL PRIMARY KEY,
    auth0_id      TEXT UNIQUE,
    email         TEXT NOT NULL UNIQUE,
    display_name  TEXT,
    is_active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    last_login_at TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS auth.roles (
    role_id     SERIAL PRIMARY KEY,
    role_name   TEXT NOT NULL UNIQUE,
    description TEXT
);

CREATE TABLE IF NOT EXISTS auth.user_roles (
    user_id    BIGINT NOT NULL REFERENCES auth.users (user_id) ON DELETE CASCADE,
    role_id    INT NOT NULL REFERENCES auth.roles (role_id) ON DELETE CASCADE,
    granted_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at TIMESTAMPTZ,
    PRIMARY KEY (user_id, role_id)
);

CREATE TABLE IF NOT EXISTS auth.sessions (
    session_id    BIGSERIAL PRIMARY KEY,
    session_token TEXT NOT NULL UNIQUE,
    user_id       BIGINT NOT NULL REFERENCES auth.users (user_id) ON DELETE CASCADE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at    TIMESTAMPTZ NOT NULL,
    is_active     BOOLEAN NOT NULL DEFAULT TRUE,
    client_ip     TEXT,
    user_agent    TEXT
);

CREATE TABLE IF NOT EXISTS auth.playbook_permissions (
    permission_id SERIAL PRIMARY KEY,
    role_id       INT NOT NULL REFERENCES auth.roles (role_id) ON DELETE CASCADE,
    playbook_path TEXT,
    allow_pattern TEXT,
    deny_pattern  TEXT,
    can_execute   BOOLEAN NOT NULL DEFAULT FALSE,
    can_view      BOOLEAN NOT NULL DEFAULT FALSE,
    can_modify    BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (role_id, playbook_path, allow_pattern)
);

-- Seed: three roles, two known users (their Auth0 `sub` is what the login playbook matches).
INSERT INTO auth.roles (role_name, description) VALUES
    ('admin', 'everything'),
    ('analyst', 'runs the e2e playbooks, not the restricted ones'),
    ('viewer', 'may look, may not run')
ON CONFLICT (role_name) DO NOTHING;

INSERT INTO auth.users (auth0_id, email, display_name) VALUES
    ('auth0|e2e-alice', 'alice@e2e.test', 'Alice Analyst'),
    ('auth0|e2e-bob', 'bob@e2e.test', 'Bob Viewer')
ON CONFLICT (auth0_id) DO NOTHING;

INSERT INTO auth.user_roles (user_id, role_id)
SELECT u.user_id, r.role_id FROM auth.users u JOIN auth.roles r
  ON (u.auth0_id, r.role_name) IN (('auth0|e2e-alice', 'analyst'), ('auth0|e2e-bob', 'viewer'))
ON CONFLICT DO NOTHING;

DELETE FROM auth.playbook_permissions;
INSERT INTO auth.playbook_permissions (role_id, playbook_path, allow_pattern, deny_pattern, can_execute, can_view, can_modify)
SELECT role_id, NULL, '%', NULL, TRUE, TRUE, TRUE FROM auth.roles WHERE role_name = 'admin'
UNION ALL
SELECT role_id, NULL, 'e2e/%', 'e2e/restricted/%', TRUE, TRUE, FALSE FROM auth.roles WHERE role_name = 'analyst'
UNION ALL
SELECT role_id, NULL, '%', NULL, FALSE, TRUE, FALSE FROM auth.roles WHERE role_name = 'viewer';
