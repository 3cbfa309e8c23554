-- Stage 2 asks, for every answer it applies, whether a newer extraction of the same record is
-- already applied; without this index that question scans the whole request ledger.
create index extraction_requests_record on extraction_requests (record_id);
