-- Every request's row is updated as it moves from pending to submitted to its outcome. With the
-- status out of every index and free space left on each page, those updates are heap-only: no
-- index entry is written for them. Lookups of a day's requests by status read the day's rows.
drop index if exists extraction_requests_day;
create index extraction_requests_day on extraction_requests (partition_day);
alter table extraction_requests set (fillfactor = 70);
-- Answers are stored as the text the provider returned, uncompressed: parsing them into jsonb
-- and compressing them cost more than the rest of recording an outcome, and every reader parses
-- the answer itself.
alter table request_results alter column answer type json using answer::json;
alter table request_results alter column answer set storage external;
