"""The state file's schema, step by step: numbered SQL scripts applied in order at
start-up, each in its own transaction with its number recorded in ``migrations``
(sqlite-utils' migrations pattern). A step is never edited once released: a change is a
new step at the end, so every older state file is brought forward the same way."""

MIGRATIONS: tuple[str, ...] = (
    # 1: mailboxes and contacts
    """
    CREATE TABLE mailbox (
        name TEXT PRIMARY KEY,
        uidvalidity INTEGER NOT NULL,
        last_uid INTEGER NOT NULL
    );
    CREATE TABLE contact (
        key TEXT PRIMARY KEY,
        client TEXT NOT NULL,
        mailbox TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        received TEXT NOT NULL,
        address TEXT NOT NULL,
        message_id TEXT,
        refs TEXT NOT NULL DEFAULT '',
        subject TEXT,
        draft INTEGER NOT NULL,
        suppressed TEXT,
        window TEXT NOT NULL,
        session TEXT,
        agenda TEXT NOT NULL,
        risk INTEGER NOT NULL DEFAULT 0,
        keyword_done INTEGER NOT NULL DEFAULT 0,
        agenda_done INTEGER NOT NULL DEFAULT 0,
        draft_tried INTEGER NOT NULL DEFAULT 0,
        draft_done INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        planned_at TEXT NOT NULL,
        done_at TEXT
    );
    CREATE INDEX contact_pending ON contact(done_at) WHERE done_at IS NULL;
    CREATE INDEX contact_client_window ON contact(client, window);
    CREATE INDEX contact_received ON contact(received);
    """,
    # 2: risk alerts and digests
    """
    ALTER TABLE contact ADD COLUMN alert INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE contact ADD COLUMN alert_done INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE contact ADD COLUMN digested_at TEXT;
    CREATE TABLE digest (
        message_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        keys TEXT NOT NULL,
        delivered_at TEXT
    );
    """,
    # 3: the service's own trouble, kept for the next digest
    """
    CREATE TABLE problem (
        what TEXT PRIMARY KEY,
        first TEXT NOT NULL,
        last TEXT NOT NULL,
        times INTEGER NOT NULL
    );
    """,
    # 4: copies of one message (base), risk marks as their own step, retries spaced
    # out after the limit, and messages that could not even be read
    """
    ALTER TABLE contact ADD COLUMN base TEXT;
    UPDATE contact SET base = key;
    CREATE INDEX contact_base ON contact(base);
    CREATE INDEX contact_message_id ON contact(message_id);
    ALTER TABLE contact ADD COLUMN risk_done INTEGER NOT NULL DEFAULT 0;
    UPDATE contact SET risk_done = keyword_done;
    ALTER TABLE contact ADD COLUMN last_attempt TEXT;
    CREATE TABLE unread (
        mailbox TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        received TEXT,
        error TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        first TEXT NOT NULL,
        last TEXT NOT NULL,
        PRIMARY KEY (mailbox, uidvalidity, uid)
    );
    """,
    # 5: what the practitioner's app will show: was the message flagged before the pass
    # saw it (its flag keeps its colour), and the address the client wrote to (the
    # draft comes from it)
    """
    ALTER TABLE contact ADD COLUMN was_flagged INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE contact ADD COLUMN reply_from TEXT;
    """,
    # 6: pre-session briefs, each recorded before it is delivered (or skipped, when
    # its session had begun), and how far the service has looked for due ones
    """
    CREATE TABLE brief (
        key TEXT PRIMARY KEY,
        client TEXT NOT NULL,
        session TEXT NOT NULL,
        message_id TEXT NOT NULL,
        planned_at TEXT NOT NULL,
        delivered_at TEXT,
        skipped INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
)
