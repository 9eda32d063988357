-- Galleries, people and their encodings; API keys (hashed); style jobs with leases.
CREATE TABLE galleries (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    model             text NOT NULL,
    model_description text NOT NULL,
    dim               integer NOT NULL CHECK (dim > 0),
    tau               real NOT NULL,
    calibration       jsonb,
    created           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE people (
    id         bigserial PRIMARY KEY,
    gallery_id bigint NOT NULL REFERENCES galleries (id) ON DELETE CASCADE,
    name       text NOT NULL,
    tau        real,
    UNIQUE (gallery_id, name)
);

-- One row per enrolled photo: the encoding as little-endian f32 bytes (exported byte for byte).
CREATE TABLE encodings (
    id           bigserial PRIMARY KEY,
    person_id    bigint NOT NULL REFERENCES people (id) ON DELETE CASCADE,
    source       text NOT NULL,
    content_hash text NOT NULL,
    encoding     bytea NOT NULL,
    UNIQUE (person_id, content_hash)
);

CREATE TABLE api_keys (
    id      text PRIMARY KEY,
    hash    text NOT NULL UNIQUE,
    label   text NOT NULL,
    scopes  text[] NOT NULL,
    created bigint NOT NULL
);

CREATE TABLE jobs (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    state       text NOT NULL DEFAULT 'queued',
    params      jsonb NOT NULL,
    content     bytea,
    style       bytea,
    percent     double precision NOT NULL DEFAULT 0,
    eta_seconds double precision,
    loss        double precision,
    error       text,
    worker      text,
    attempts    integer NOT NULL DEFAULT 0,
    lease_until timestamptz,
    result      bytea,
    created     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX jobs_waiting ON jobs (id) WHERE state IN ('queued', 'running');
