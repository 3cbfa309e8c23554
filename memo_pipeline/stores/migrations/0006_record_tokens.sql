-- The token estimate of a record's prompt part (header and content), computed once when the
-- record is stored, so that planning a day reads a number instead of every record's text. Null
-- for records stored before this column existed: the planner estimates those itself.
alter table content_records add column record_tokens integer;
-- Planning looks for an earlier answer to identical content by its hash.
create index content_records_hash on content_records (content_hash);
-- unique (request_key, attempt) already serves every lookup by request_key; a second index on
-- the same leading column only slows each insert.
drop index if exists extraction_requests_key;
