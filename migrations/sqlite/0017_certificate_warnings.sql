-- Which expiry warnings were announced: one `sso_connection.certificate_expiring`
-- event per connection, certificate and threshold (30, 7, 1 and 0 days left),
-- however many replicas watch and however often.
CREATE TABLE certificate_warnings (
    workspace TEXT NOT NULL,
    connection TEXT NOT NULL,
    certificate_sha256 TEXT NOT NULL,
    threshold_days BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    PRIMARY KEY (workspace, connection, certificate_sha256, threshold_days)
);
