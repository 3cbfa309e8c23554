-- One row per input record, as normalised from the landing zone. Re-loading the same file
-- updates nothing (record_id is derived from org and source id).
create table content_records (
    record_id      text primary key,
    org_id         text not null,
    source_id      text not null,
    collection     text not null,
    partition_day  date not null,
    kind           text not null,
    identifier     text,
    title          text,
    content        text not null,
    content_hash   text not null,
    source_ts      timestamptz not null,
    source         text not null,
    source_line    integer,
    metadata       jsonb not null default '{}',
    ingested_at    timestamptz not null default now()
);
create index content_records_day on content_records (partition_day);

-- Every input record or request that could not be stored, with its reason.
create table dead_letters (
    id             bigserial primary key,
    dedup_key      text not null unique,
    stage          text not null,            -- ingest | extract | stage2
    org_id         text,
    partition_day  date,
    source         text,
    source_line    integer,
    record_id      text,
    request_id     text,
    reason         text not null,
    created_at     timestamptz not null default now()
);
create index dead_letters_day on dead_letters (partition_day);

-- The request ledger: one row per attempt to extract one record under one schema version and
-- model. request_key identifies the work (org, collection, content, schema version, model), so
-- content already extracted is never paid for again, whichever path extracted it.
create table extraction_requests (
    request_id         text primary key,
    request_key        text not null,
    attempt            integer not null,
    org_id             text not null,
    record_id          text not null references content_records (record_id),
    partition_day      date not null,
    collection         text not null,
    schema_version     text not null,
    provider           text not null,
    model              text not null,
    kind               text not null default 'extract',   -- extract | repair
    path               text not null default 'batch',     -- batch | sync
    status             text not null default 'pending',
        -- pending | submitted | succeeded | retryable | permanent | dead | superseded
    job_key            text,
    prefix_key         text not null,
    est_prefix_tokens  integer not null default 0,
    est_record_tokens  integer not null default 0,
    repair_errors      jsonb,
    redacted           boolean not null default false,  -- content redacted before it was sent
    reason             text,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    unique (request_key, attempt)
);
create index extraction_requests_day on extraction_requests (partition_day, status);
create index extraction_requests_key on extraction_requests (request_key);
create index extraction_requests_job on extraction_requests (job_key);

-- Provider jobs. The row (the intent) is committed before the provider is called; job_key is a
-- hash of the batch's request ids, so the same work can never become two jobs.
create table provider_jobs (
    job_key          text primary key,
    provider         text not null,
    model            text not null,
    partition_day    date not null,
    job_id           text,
    status           text not null,   -- intent | submitted | ended | failed | collected
    provider_status  text,
    is_priming       boolean not null default false,
    request_count    integer not null,
    bytes            bigint not null,
    console_url      text,
    message          text,
    created_at       timestamptz not null default now(),
    submitted_at     timestamptz,
    ended_at         timestamptz,
    collected_at     timestamptz,
    last_polled_at   timestamptz
);
create index provider_jobs_open on provider_jobs (status, last_polled_at);
create index provider_jobs_day on provider_jobs (partition_day);

-- One outcome per request, with provider-reported usage and its cost.
create table request_results (
    request_id             text primary key references extraction_requests (request_id),
    job_key                text,
    outcome                text not null,   -- succeeded | retryable | permanent | invalid
    error                  text,
    answer                 jsonb,
    stop_reason            text,
    input_tokens           integer not null default 0,
    cache_write_5m_tokens  integer not null default 0,
    cache_write_1h_tokens  integer not null default 0,
    cache_read_tokens      integer not null default 0,
    output_tokens          integer not null default 0,
    service_tier           text,
    realised_usd           numeric(14, 8),
    counterfactual_usd     numeric(14, 8),
    received_at            timestamptz not null default now(),
    applied_at             timestamptz
);

create table entities (
    entity_id    text primary key,
    org_id       text not null,
    type         text not null,
    name         text not null,
    norm_name    text not null,
    names        text[] not null default '{}',
    created_at   timestamptz not null default now(),
    merged_into  text references entities (entity_id)
);
create index entities_name on entities (org_id, type, norm_name);

create table entity_identifiers (
    org_id      text not null,
    identifier  text not null,
    entity_id   text not null references entities (entity_id),
    primary key (org_id, identifier)
);

-- Property values keep their history: the current value has superseded_by null; ordering is by
-- the source timestamp, never by arrival.
create table property_values (
    value_id          text primary key,
    org_id            text not null,
    entity_id         text not null references entities (entity_id),
    property          text not null,
    value             jsonb not null,
    valid_from        timestamptz not null,
    superseded_by     text,
    source_record_id  text not null,
    schema_version    text not null,
    created_at        timestamptz not null default now()
);
create index property_values_entity on property_values (entity_id, property);

create table memories (
    memory_id          text primary key,
    org_id             text not null,
    entity_id          text not null references entities (entity_id),
    text               text not null,
    norm_hash          text not null,
    partition_day      date not null,
    source_ts          timestamptz not null,
    source_record_ids  text[] not null,
    schema_version     text not null,
    superseded_by      text,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now()
);
create index memories_day on memories (partition_day);
create index memories_entity on memories (entity_id);

create table edges (
    edge_id            text primary key,
    org_id             text not null,
    subject_id         text not null references entities (entity_id),
    predicate          text not null,
    object_id          text not null references entities (entity_id),
    source_record_ids  text[] not null,
    first_seen         timestamptz not null
);
create index edges_subject on edges (subject_id);
create index edges_object on edges (object_id);

-- Cache priming: a one-request batch per prefix goes first where the provider's batch cache
-- starts cold; the rest of the prefix's requests wait until it has ended.
create table cache_primes (
    provider    text not null,
    model       text not null,
    prefix_key  text not null,
    job_key     text not null references provider_jobs (job_key),
    created_at  timestamptz not null default now(),
    primary key (provider, model, prefix_key, job_key)
);
