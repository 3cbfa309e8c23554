-- The cost ledger. Request costs are exact: a request costs a fraction of a cent at per-million
-- token rates, and a fixed scale of 8 places would round every row, so sums over a day would no
-- longer equal the sum of the providers' usage priced exactly.
alter table request_results alter column realised_usd type numeric;
alter table request_results alter column counterfactual_usd type numeric;

-- What a request is expected to cost once it is claimed into a provider job, at the rates of its
-- path with no cache; the spend guard counts it as committed spend until the request's result
-- (and with it the realised cost) arrives.
alter table extraction_requests add column forecast_usd numeric;

create index provider_jobs_created on provider_jobs (created_at);
create index request_results_received on request_results (received_at);
