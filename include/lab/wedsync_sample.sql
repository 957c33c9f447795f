-- A small, realistic WedSync data set for the lab's protected primary: a few thousand rows.
-- Deterministic (setseed) so row counts are stable across lab rebuilds.
SELECT setseed(0.263);

CREATE TABLE IF NOT EXISTS couples (
    id BIGSERIAL PRIMARY KEY,
    partner_one TEXT NOT NULL,
    partner_two TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS suppliers (
    id BIGSERIAL PRIMARY KEY,
    business_name TEXT NOT NULL,
    category TEXT NOT NULL CHECK (category IN ('venue','photographer','florist','caterer','band','planner','baker','dress')),
    city TEXT NOT NULL,
    rating NUMERIC(2,1) CHECK (rating BETWEEN 0 AND 5)
);
CREATE TABLE IF NOT EXISTS weddings (
    id BIGSERIAL PRIMARY KEY,
    couple_id BIGINT NOT NULL REFERENCES couples(id),
    venue_id BIGINT REFERENCES suppliers(id),
    wedding_date DATE NOT NULL,
    guest_count INTEGER NOT NULL CHECK (guest_count > 0),
    budget_cents BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'planning'
);
CREATE TABLE IF NOT EXISTS tasks (
    id BIGSERIAL PRIMARY KEY,
    wedding_id BIGINT NOT NULL REFERENCES weddings(id) ON DELETE CASCADE,
    supplier_id BIGINT REFERENCES suppliers(id),
    title TEXT NOT NULL,
    due_date DATE NOT NULL,
    done BOOLEAN NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS payments (
    id BIGSERIAL PRIMARY KEY,
    wedding_id BIGINT NOT NULL REFERENCES weddings(id) ON DELETE CASCADE,
    supplier_id BIGINT NOT NULL REFERENCES suppliers(id),
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    paid_at TIMESTAMPTZ NOT NULL,
    method TEXT NOT NULL CHECK (method IN ('card','bank_transfer','cash'))
);
CREATE INDEX IF NOT EXISTS tasks_wedding_idx ON tasks (wedding_id);
CREATE INDEX IF NOT EXISTS payments_wedding_idx ON payments (wedding_id);

INSERT INTO couples (partner_one, partner_two, email, created_at)
SELECT (ARRAY['Alex','Sam','Jordan','Taylor','Morgan','Casey','Riley','Jamie'])[1 + (i % 8)] || ' ' || i,
       (ARRAY['Robin','Avery','Quinn','Drew','Parker','Reese','Skyler','Rowan'])[1 + ((i * 7) % 8)] || ' ' || i,
       'couple' || i || '@example.com',
       NOW() - (random() * INTERVAL '400 days')
FROM generate_series(1, 800) AS i
ON CONFLICT (email) DO NOTHING;

INSERT INTO suppliers (business_name, category, city, rating)
SELECT 'Supplier ' || i,
       (ARRAY['venue','photographer','florist','caterer','band','planner','baker','dress'])[1 + (i % 8)],
       (ARRAY['London','Manchester','Bristol','Leeds','Edinburgh','Cardiff'])[1 + (i % 6)],
       round((3 + random() * 2)::numeric, 1)
FROM generate_series(1, 200) AS i
WHERE NOT EXISTS (SELECT 1 FROM suppliers);

INSERT INTO weddings (couple_id, venue_id, wedding_date, guest_count, budget_cents, status)
SELECT c.id,
       (SELECT id FROM suppliers WHERE category = 'venue' ORDER BY id OFFSET (c.id % 25) LIMIT 1),
       CURRENT_DATE + ((c.id * 3) % 540 - 90)::int,
       40 + (c.id % 160),
       1500000 + (c.id % 50) * 25000,
       CASE WHEN c.id % 9 = 0 THEN 'completed' ELSE 'planning' END
FROM couples c
WHERE NOT EXISTS (SELECT 1 FROM weddings);

INSERT INTO tasks (wedding_id, supplier_id, title, due_date, done)
SELECT w.id, 1 + ((w.id * t) % 200),
       (ARRAY['Book venue','Send invitations','Taste menu','Choose flowers','Final fitting'])[t],
       w.wedding_date - (t * 30)::int, random() < 0.4
FROM weddings w CROSS JOIN generate_series(1, 5) AS t
WHERE NOT EXISTS (SELECT 1 FROM tasks);

INSERT INTO payments (wedding_id, supplier_id, amount_cents, paid_at, method)
SELECT w.id, 1 + ((w.id * p) % 200), 50000 + (w.id * p) % 400000,
       NOW() - (p * INTERVAL '20 days'),
       (ARRAY['card','bank_transfer','cash'])[1 + (p % 3)]
FROM weddings w CROSS JOIN generate_series(1, 3) AS p
WHERE NOT EXISTS (SELECT 1 FROM payments);
