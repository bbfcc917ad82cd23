-- The tables pyworkflow-postgres made at schema version 2 (before queues and schedules),
-- from pg_dump --schema-only of a database that release created, names unqualified
-- (run with search_path set to the schema under test).
CREATE TABLE pyworkflow_events (
    run_id character varying NOT NULL,
    seq integer NOT NULL,
    type character varying NOT NULL,
    correlation_id character varying,
    "timestamp" double precision NOT NULL,
    payload character varying NOT NULL
);
CREATE TABLE pyworkflow_hooks (
    token character varying NOT NULL,
    run_id character varying NOT NULL,
    correlation_id character varying NOT NULL,
    created_at double precision NOT NULL,
    schema_path character varying,
    secret character varying
);
CREATE TABLE pyworkflow_runs (
    run_id character varying NOT NULL,
    workflow_name character varying NOT NULL,
    workflow_version character varying,
    status character varying NOT NULL,
    input character varying NOT NULL,
    serializer character varying NOT NULL,
    result character varying,
    error character varying,
    error_message character varying,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    completed_at double precision,
    idempotency_key character varying,
    parent_run_id character varying,
    wake_at double precision,
    lease_owner character varying,
    lease_expires_at double precision,
    last_seq integer NOT NULL
);
CREATE TABLE pyworkflow_schema_version (
    version integer NOT NULL,
    description character varying NOT NULL,
    applied_at double precision NOT NULL
);
CREATE SEQUENCE pyworkflow_schema_version_version_seq
    AS integer START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1;
ALTER SEQUENCE pyworkflow_schema_version_version_seq
    OWNED BY pyworkflow_schema_version.version;
CREATE TABLE pyworkflow_step_leases (
    run_id character varying NOT NULL,
    step_id character varying NOT NULL,
    owner character varying NOT NULL,
    lease_until double precision NOT NULL
);
ALTER TABLE ONLY pyworkflow_schema_version
    ALTER COLUMN version SET DEFAULT nextval('pyworkflow_schema_version_version_seq'::regclass);
ALTER TABLE ONLY pyworkflow_events ADD CONSTRAINT pyworkflow_events_pkey PRIMARY KEY (run_id, seq);
ALTER TABLE ONLY pyworkflow_hooks ADD CONSTRAINT pyworkflow_hooks_pkey PRIMARY KEY (token);
ALTER TABLE ONLY pyworkflow_runs ADD CONSTRAINT pyworkflow_runs_pkey PRIMARY KEY (run_id);
ALTER TABLE ONLY pyworkflow_schema_version
    ADD CONSTRAINT pyworkflow_schema_version_pkey PRIMARY KEY (version);
ALTER TABLE ONLY pyworkflow_step_leases
    ADD CONSTRAINT pyworkflow_step_leases_pkey PRIMARY KEY (run_id, step_id);
ALTER TABLE ONLY pyworkflow_runs
    ADD CONSTRAINT uq_pyworkflow_runs_idempotency_key UNIQUE (idempotency_key);
CREATE INDEX ix_pyworkflow_hooks_run_id ON pyworkflow_hooks USING btree (run_id);
CREATE INDEX ix_pyworkflow_runs_created ON pyworkflow_runs USING btree (created_at, run_id);
CREATE INDEX ix_pyworkflow_runs_parent ON pyworkflow_runs USING btree (parent_run_id);
CREATE INDEX ix_pyworkflow_runs_status ON pyworkflow_runs USING btree (status);
CREATE INDEX ix_pyworkflow_runs_wake_at ON pyworkflow_runs USING btree (wake_at);
CREATE INDEX ix_pyworkflow_runs_workflow ON pyworkflow_runs USING btree (workflow_name);
CREATE INDEX ix_pyworkflow_step_leases_until ON pyworkflow_step_leases USING btree (lease_until);
INSERT INTO pyworkflow_schema_version (version, description, applied_at) VALUES
    (1, 'runs, events, hooks and step leases (pyworkflow.storage.schema)', 0),
    (2, 'index runs by parent_run_id (list a run''s children)', 0);
