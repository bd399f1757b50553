-- One slice of the benchmark's shop data; psql variables give the ranges (see scripts/bench.mjs).
INSERT INTO customers (email, name, country, created_at, profile)
SELECT lower(fn) || '.' || lower(ln) || (g % 1000) || '@' || (ARRAY['gmail.com','yahoo.com','outlook.com','example.org','acme.io'])[1 + g % 5],
       fn || ' ' || ln, (ARRAY['DE','US','FR','GB','NL','ES','IT','PL','SE','BR'])[1 + (g * 7) % 10],
       timestamptz '2020-01-01' + (g * interval '37 seconds'),
       jsonb_build_object('newsletter', g % 3 = 0, 'tier', (ARRAY['free','pro','team','enterprise'])[1 + g % 4], 'locale', (ARRAY['de-DE','en-US','fr-FR','en-GB'])[1 + g % 4], 'signup_source', (ARRAY['ads','organic','referral','partner'])[1 + (g / 7) % 4])
  FROM generate_series(:c_from, :c_to) g,
       LATERAL (SELECT (ARRAY['Anna','Ben','Clara','David','Emma','Felix','Greta','Hugo','Ida','Jonas','Klara','Leon','Mia','Noah','Olga','Paul'])[1 + (g * 13) % 16] AS fn,
                       (ARRAY['Schmidt','Miller','Dubois','Rossi','Jansen','Garcia','Nowak','Berg','Smith','Martin','Weber','Fischer'])[1 + (g * 17) % 12] AS ln) n;
INSERT INTO orders (customer_id, status, total, currency, placed_at, shipping_address, note)
SELECT 1 + (g::bigint * 7919) % :customers, (ARRAY['pending','paid','shipped','delivered','refunded'])[1 + (g / 3) % 5],
       round((5 + (g * 37 % 50000) / 100.0)::numeric, 2), (ARRAY['EUR','USD','GBP'])[1 + g % 3],
       timestamptz '2021-01-01' + (g * interval '11 seconds'),
       (g % 900 + 1) || ' ' || (ARRAY['Main Street','Hauptstrasse','Rue de la Paix','High Street','Kerkstraat'])[1 + g % 5] || ', ' || (10000 + g % 89999) || ' ' || (ARRAY['Berlin','Boston','Paris','London','Utrecht','Madrid'])[1 + g % 6],
       CASE WHEN g % 4 = 0 THEN (ARRAY['Leave at the door','Gift wrap please','Call before delivery','Deliver after 5pm','Fragile: glassware inside'])[1 + g % 5] END
  FROM generate_series(:o_from, :o_to) g;
INSERT INTO visits (customer_id, kind, at, payload)
SELECT 1 + (g::bigint * 104729) % :customers, k, timestamptz '2022-01-01' + (g * interval '3 seconds'),
       jsonb_build_object('path', (ARRAY['/','/products','/cart','/checkout','/account','/search'])[1 + g % 6] || CASE WHEN g % 6 = 1 THEN '/' || (g % 5000) ELSE '' END,
                          'ua', (ARRAY['Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36','Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1','Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0'])[1 + g % 3],
                          'ip', '10.' || (g % 256) || '.' || ((g / 256) % 256) || '.' || (g * 7 % 256), 'session', substr(md5((g / 20)::text), 1, 16), 'ms', g % 900)
  FROM generate_series(:e_from, :e_to) g, LATERAL (SELECT (ARRAY['page_view','click','add_to_cart','checkout','login','search'])[1 + g % 6] AS k) kk;
ANALYZE;
