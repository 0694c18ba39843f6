-- One row that names this deployment. Several Switchboard instances that share one database report
-- the same instance id on /readyz, which tells an operator they are looking at one deployment.
CREATE TABLE instance (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO instance DEFAULT VALUES;
