-- 0010_attempts_token_cap: password verifications reserved before the hash, and the cap on a
-- user's live tokens (auth.md §12.4, §5.3; SQLite, mirrored by migrations/postgres/0010).

-- Attempts reserved under a lockout key and not yet settled (kps.LockState): they count like
-- failures while they are under way, until in_flight_until (epoch ms; 0 when none), so that
-- guesses sent at once cannot together exceed the allowance. Existing rows have none.
ALTER TABLE lockouts ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0;
ALTER TABLE lockouts ADD COLUMN in_flight_until INTEGER NOT NULL DEFAULT 0;

-- A user's live tokens, oldest first: issuing one more than the cap revokes the oldest in the
-- same transaction (store/credentials.go, CreateToken), which counts and orders them here
-- without reading the user's revoked ones.
CREATE INDEX tokens_unrevoked_by_user ON tokens (user_id, issued_at) WHERE revoked_at = 0;
