-- The token estimate of a record's prompt part (header and content), computed once when the
-- record is stored, so that planning a day reads a number instead of every record's text. Null
-- for records stored before this column existed: the planner estimates those itself.
alter table content_records add column record_tokens integer;
-- The hash of the content a request was made for. Planning reuses an earlier answer to
-- identical content by this hash; the record's current hash is no guide, since a record whose
-- source was edited keeps its id and takes the new content.
alter table extraction_requests add column content_hash text;
update extraction_requests q set content_hash = c.content_hash from content_records c
    where c.record_id = q.record_id and q.request_key = 'k' || left(encode(sha256(convert_to(
        concat_ws(chr(31), q.org_id, q.record_id, c.content_hash, q.schema_version, q.model),
        'UTF8')), 'hex'), 39);
create index extraction_requests_content on extraction_requests (content_hash);
-- unique (request_key, attempt) already serves every lookup by request_key; a second index on
-- the same leading column only slows each insert.
drop index if exists extraction_requests_key;
