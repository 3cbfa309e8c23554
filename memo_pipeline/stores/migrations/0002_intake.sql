-- The intake API: orgs and their keys, accepted writes (events), their records, their status
-- history, documents stored without extraction, and the webhook outbox with its delivery log.

-- One row per org that uses the API. The webhook secret is a Fernet token (key from
-- MEMO_SECRET_KEY), never the plain secret. webhook_networks names the address classes
-- (loopback | private | link-local) the org's webhook may point at; empty means public only.
create table intake_orgs (
    org_id            text primary key,
    webhook_url       text,
    webhook_secret    text,
    webhook_networks  text[] not null default '{}',
    rate_per_second   double precision,
    burst             integer,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now()
);

-- API keys: 'mk_<key_id>_<secret>'; only sha256(salt || secret) is kept. A rotated key keeps
-- working until expires_at; a revoked one stops at once.
create table intake_api_keys (
    key_id        text primary key,
    org_id        text not null references intake_orgs (org_id),
    salt          text not null,
    key_hash      text not null,
    label         text,
    created_at    timestamptz not null default now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
create index intake_api_keys_org on intake_api_keys (org_id);

-- One row per accepted write (a memorize call or a saveBatch call), committed before the API
-- answers. status: accepted | queued | submitted | extracted | stored | failed; submitted and
-- extracted of the batch path are read from the ledger, the rest is written here.
create table intake_events (
    event_id           text primary key,
    org_id             text not null,
    kind               text not null,               -- memorize | save_batch
    execution_mode     text not null,               -- sync | async | bulk
    ai_extraction      boolean not null default true,
    collection         text not null,
    deadline           timestamptz,
    status             text not null default 'accepted',
    reason             text,
    result             jsonb,
    idempotency_key    text,
    record_count       integer not null,
    queued_at          timestamptz,
    escalated_at       timestamptz,
    escalation_reason  text,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    finished_at        timestamptz,
    unique (org_id, idempotency_key)
);
create index intake_events_open on intake_events (execution_mode, status)
    where status not in ('stored', 'failed');

-- The records of an event. request_key is the ledger's identity of the record's extraction
-- (extraction_requests.request_key); null for documents stored without extraction.
create table intake_event_records (
    event_id       text not null references intake_events (event_id),
    position       integer not null,
    record_id      text not null,
    request_key    text,
    partition_day  date not null,
    primary key (event_id, position)
);
create index intake_event_records_key on intake_event_records (request_key);
create index intake_event_records_record on intake_event_records (record_id);

create table intake_event_history (
    id        bigserial primary key,
    event_id  text not null references intake_events (event_id),
    status    text not null,
    detail    text,
    at        timestamptz not null default now()
);
create index intake_event_history_event on intake_event_history (event_id, id);

-- Documents saved with aiExtraction false: chunked into memories of a document entity and
-- embedded, no model call. One row per document (record id from org and document id).
create table intake_documents (
    record_id     text primary key,
    org_id        text not null,
    event_id      text not null,
    source_id     text not null,
    title         text,
    content       text not null,
    content_hash  text not null,
    source_ts     timestamptz not null,
    partition_day date not null,
    entity_id     text,
    chunks        integer not null default 0,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);

-- The webhook outbox: a row is written in the transaction that marks its event stored or
-- failed, so a notification can be late but never lost. message_id is the webhook-id header and
-- stays the same across retries.
create table intake_outbox (
    message_id       text primary key,
    org_id           text not null,
    event_id         text not null references intake_events (event_id),
    event_type       text not null,
    payload          jsonb not null,
    status           text not null default 'pending',   -- pending | delivered | exhausted
    attempts         integer not null default 0,
    next_attempt_at  timestamptz not null default now(),
    last_error       text,
    created_at       timestamptz not null default now(),
    delivered_at     timestamptz
);
create index intake_outbox_due on intake_outbox (status, next_attempt_at);

-- Every delivery attempt. url holds scheme, host and path only (a query may carry a token).
create table intake_webhook_deliveries (
    id           bigserial primary key,
    message_id   text not null references intake_outbox (message_id),
    org_id       text not null,
    event_id     text not null,
    attempt      integer not null,
    url          text not null,
    status_code  integer,
    error        text,
    duration_ms  integer,
    at           timestamptz not null default now()
);
create index intake_webhook_deliveries_event on intake_webhook_deliveries (org_id, event_id);
