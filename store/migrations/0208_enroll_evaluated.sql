-- When the enroll rules were last evaluated against a host: an available
-- host no rule matched is evaluated again once a rule changed after that.
ALTER TABLE hosts ADD COLUMN enroll_evaluated_at timestamptz;
UPDATE hosts SET enroll_evaluated_at = now() WHERE enroll_verdicts IS NOT NULL;
