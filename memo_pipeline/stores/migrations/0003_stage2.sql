-- Stage 2: entity merges with their evidence (undoable), content-keyed dedup of memories and
-- edges, retraction of what a newer extraction of the same record no longer states, and the
-- vector outbox that keeps LanceDB in step with PostgreSQL across crashes.

-- Every normalised name an entity is known by; name matching looks here, not only at the first.
alter table entities add column norm_names text[] not null default '{}';
update entities set norm_names = array[norm_name] where norm_names = '{}';
create index entities_norm_names on entities using gin (norm_names);
create index entities_merged_into on entities (merged_into) where merged_into is not null;
create index entity_identifiers_entity on entity_identifiers (entity_id);

-- One row per merge of two entities of one org: the younger (merged_id) into the older
-- (survivor_id). evidence says why (the identifiers or name that linked them, and the record);
-- changes lists exactly what moved, so that undo_merge can put it back. A merge that was undone
-- (undone_at set) also stops the same pair from being merged again automatically.
create table entity_merges (
    merge_id     bigserial primary key,
    org_id       text not null,
    survivor_id  text not null references entities (entity_id),
    merged_id    text not null references entities (entity_id),
    evidence     jsonb not null,
    changes      jsonb not null default '{}',
    created_at   timestamptz not null default now(),
    undone_at    timestamptz
);
create index entity_merges_survivor on entity_merges (org_id, survivor_id);
create index entity_merges_merged on entity_merges (org_id, merged_id);

-- Memories: exact duplicates are found by content (entity, normalised text), not only by id, so
-- that memories moved by a merge still de-duplicate. superseded_by holds what replaced a memory:
-- another memory's id (merge of two entities with the same fact) or the request id of the newer
-- extraction that no longer states it. vector_dirty marks rows LanceDB has not caught up with yet
-- (new, superseded, moved to another entity); rows that existed before this migration are
-- already mirrored, so they start clean.
-- alias_hashes: normalised texts that were found to be near duplicates of this memory, so that
-- the same text met again lands here by exact lookup, whatever was stored in between.
alter table memories add column alias_hashes text[] not null default '{}';
alter table memories add column vector_dirty boolean not null default false;
alter table memories alter column vector_dirty set default true;
create index memories_vector_dirty on memories (memory_id) where vector_dirty;
create unique index memories_active_text on memories (org_id, entity_id, norm_hash)
    where superseded_by is null;
create index memories_sources on memories using gin (source_record_ids);

-- Edges get the same treatment: content-keyed, superseded rather than deleted.
alter table edges add column superseded_by text;
create unique index edges_active_key on edges (org_id, subject_id, predicate, object_id)
    where superseded_by is null;
create index edges_sources on edges using gin (source_record_ids);

-- A property value that a newer extraction of its record no longer states: retracted_by (and
-- superseded_by) hold that extraction's request id; it stays in the table but leaves the history.
alter table property_values add column retracted_by text;
create index property_values_record on property_values (source_record_id);
