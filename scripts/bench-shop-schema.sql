-- The benchmark's shop tables: customers, orders and page visits with realistic values.
CREATE TABLE customers (id bigserial PRIMARY KEY, email text NOT NULL, name text NOT NULL, country text, created_at timestamptz NOT NULL, profile jsonb NOT NULL);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL, total numeric(12,2) NOT NULL, currency text NOT NULL, placed_at timestamptz NOT NULL, shipping_address text, note text);
CREATE TABLE visits (id bigserial PRIMARY KEY, customer_id bigint, kind text NOT NULL, at timestamptz NOT NULL, payload jsonb NOT NULL);
CREATE INDEX ON orders (customer_id); CREATE INDEX ON visits (customer_id, at); CREATE INDEX ON customers (email);
