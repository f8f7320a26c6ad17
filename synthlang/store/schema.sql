-- synthlang store schema. SCHEMA_VERSION and CACHE_VERSION live in table meta.
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);

CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    recipe VARCHAR,
    recipe_path VARCHAR,
    recipe_fingerprint VARCHAR,
    params JSON,
    argv JSON,
    status VARCHAR,              -- running | finished | interrupted | failed | budget
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    calls_made INTEGER DEFAULT 0,
    calls_cached INTEGER DEFAULT 0,
    prompt_tokens BIGINT DEFAULT 0,
    completion_tokens BIGINT DEFAULT 0,
    wall_s DOUBLE,
    synth_version VARCHAR
);

CREATE TABLE IF NOT EXISTS steps (
    run_id VARCHAR,
    step VARCHAR,
    fingerprint VARCHAR,
    operator VARCHAR,
    input VARCHAR,
    model VARCHAR,
    engine VARCHAR,
    model_id VARCHAR,
    template_hash VARCHAR,
    options JSON,
    rows_in INTEGER,
    rows_out INTEGER,
    rows_failed INTEGER,
    calls_made INTEGER,
    calls_cached INTEGER,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    PRIMARY KEY (run_id, step)
);

CREATE TABLE IF NOT EXISTS calls (
    call_key VARCHAR PRIMARY KEY,   -- sha256 over engine, model, messages, sampling, sample index, seed, schema
    engine VARCHAR,
    model VARCHAR,
    messages JSON,
    sampling JSON,
    seed BIGINT,
    sample_index INTEGER,
    json_schema JSON,
    response VARCHAR,
    finish_reason VARCHAR,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_s DOUBLE,
    error VARCHAR,
    logprobs JSON,
    meta JSON,                      -- endpoint, batch size, concurrency: recorded, never keyed
    run_id VARCHAR,
    step VARCHAR,
    created_at TIMESTAMP
);

-- The call key without max_tokens (plan/reuse.py): a call that stopped on its own is reused under a
-- larger max_tokens. Added in place (no schema version bump): older files gain the column on open.
ALTER TABLE calls ADD COLUMN IF NOT EXISTS key_nomax VARCHAR;

CREATE TABLE IF NOT EXISTS rows (
    row_id VARCHAR PRIMARY KEY,     -- sha256 over step fingerprint, parent row ids, sample index
    step VARCHAR,
    step_fingerprint VARCHAR,
    operator VARCHAR,
    round INTEGER,
    sample_index INTEGER,
    status VARCHAR,                 -- ok | failed
    error VARCHAR,
    raw VARCHAR,
    call_key VARCHAR,
    model VARCHAR,
    template_hash VARCHAR,
    data JSON,
    created_at TIMESTAMP
);

-- No primary key on lineage and run_rows (each one is an ART index DuckDB updates on every insert: together
-- about a quarter of a bulk flush). Their rows are written with their child row in one transaction, so a
-- duplicate edge or link can only come with a row already stored, which the rows key rejects; the writer
-- then writes that batch again set-based, skipping edges and links already present (store.py: _insert).
CREATE TABLE IF NOT EXISTS lineage (
    child_id VARCHAR,
    parent_id VARCHAR,
    step VARCHAR,
    round INTEGER
);

-- `synth lineage` walks child -> parents: an index on child_id makes each step a lookup, not a scan
CREATE INDEX IF NOT EXISTS lineage_child ON lineage (child_id);

CREATE TABLE IF NOT EXISTS run_rows (
    run_id VARCHAR,
    row_id VARCHAR,
    step VARCHAR,
    reused BOOLEAN,
    ord VARCHAR                     -- the row's canonical position in its step (exports sort by it)
);

CREATE TABLE IF NOT EXISTS exports (
    run_id VARCHAR,
    step VARCHAR,
    path VARCHAR,
    format VARCHAR,
    rows INTEGER,
    created_at TIMESTAMP
);

-- One row per external training command a loop ran between rounds (synthlang itself never trains).
CREATE TABLE IF NOT EXISTS train_runs (
    run_id VARCHAR,
    loop VARCHAR,
    round INTEGER,
    command VARCHAR,                -- the command as run, placeholders filled in
    data_path VARCHAR,              -- the JSONL of pool rows handed to it
    output_path VARCHAR,            -- where it was asked to write (SYNTH_TRAIN_OUT)
    inputs_digest VARCHAR,          -- digest of the fed row ids: a resumed run skips a finished command
    exit_status INTEGER,
    output_tail VARCHAR,            -- last 4000 characters of stdout+stderr
    seconds DOUBLE,
    created_at TIMESTAMP
);
-- OpenAI Batch API jobs (engine openai, batch=true): a restarted run resumes the job instead of resubmitting.
CREATE TABLE IF NOT EXISTS batch_jobs (
    job_key VARCHAR PRIMARY KEY,     -- sha256 over endpoint, model and the sorted call keys of the batch
    batch_id VARCHAR,
    input_file_id VARCHAR,
    endpoint VARCHAR,                -- the API base URL (never the key)
    status VARCHAR,                  -- the last status seen: validating | in_progress | completed | failed | ...
    n_requests INTEGER,
    created_at TIMESTAMP,
    updated_at TIMESTAMP
);

-- Failed rows with their reason and raw reply: SELECT step, error, count(*) FROM failures GROUP BY ALL.
CREATE OR REPLACE VIEW failures AS
    SELECT r.step, r.row_id, r.error, r.raw, r.call_key, c.finish_reason, r.data, r.created_at
    FROM rows r LEFT JOIN calls c ON c.call_key = r.call_key
    WHERE r.status = 'failed';
