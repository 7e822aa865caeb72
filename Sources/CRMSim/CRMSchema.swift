/// The CRM's tables, shaped like a typical small-business web application's SQLite database.
enum CRMSchema {
    /// The names of the counters kept in `app_counters`, each the row count of the table it names.
    static let countedTables = ["activity_logs", "comments"]

    static let statements = """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        full_name TEXT NOT NULL,
        role TEXT NOT NULL,
        phone TEXT,
        password_hash TEXT NOT NULL,
        is_active INTEGER NOT NULL DEFAULT 1,
        settings TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        last_login_at TEXT
    );
    CREATE TABLE clients (
        id INTEGER PRIMARY KEY,
        company_name TEXT NOT NULL,
        contact_name TEXT NOT NULL,
        email TEXT NOT NULL,
        phone TEXT,
        address TEXT,
        city TEXT,
        country TEXT,
        industry TEXT,
        owner_id INTEGER NOT NULL REFERENCES users(id),
        status TEXT NOT NULL DEFAULT 'active',
        lifetime_value_cents INTEGER NOT NULL DEFAULT 0,
        custom_fields TEXT NOT NULL DEFAULT '{}',
        notes TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX clients_email ON clients(email);
    CREATE INDEX clients_company_name ON clients(company_name);
    CREATE INDEX clients_owner_id ON clients(owner_id);
    CREATE INDEX clients_status ON clients(status);
    CREATE INDEX clients_created_at ON clients(created_at);
    CREATE TABLE leads (
        id INTEGER PRIMARY KEY,
        first_name TEXT NOT NULL,
        last_name TEXT NOT NULL,
        email TEXT NOT NULL,
        phone TEXT,
        company TEXT,
        title TEXT,
        source TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'new',
        score INTEGER NOT NULL DEFAULT 0,
        estimated_value_cents INTEGER,
        owner_id INTEGER NOT NULL REFERENCES users(id),
        client_id INTEGER REFERENCES clients(id),
        custom_fields TEXT NOT NULL DEFAULT '{}',
        notes TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX leads_email ON leads(email);
    CREATE INDEX leads_status ON leads(status);
    CREATE INDEX leads_owner_id ON leads(owner_id);
    CREATE INDEX leads_client_id ON leads(client_id);
    CREATE INDEX leads_created_at ON leads(created_at);
    CREATE TABLE comments (
        id INTEGER PRIMARY KEY,
        author_id INTEGER NOT NULL REFERENCES users(id),
        lead_id INTEGER REFERENCES leads(id) ON DELETE CASCADE,
        client_id INTEGER REFERENCES clients(id) ON DELETE CASCADE,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        edited_at TEXT
    );
    CREATE INDEX comments_lead_id ON comments(lead_id);
    CREATE INDEX comments_client_id ON comments(client_id);
    CREATE INDEX comments_author_id ON comments(author_id);
    CREATE INDEX comments_created_at ON comments(created_at);
    CREATE TABLE attendance (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        work_date TEXT NOT NULL,
        check_in_at TEXT NOT NULL,
        check_out_at TEXT,
        location TEXT NOT NULL,
        note TEXT,
        UNIQUE (user_id, work_date)
    );
    CREATE INDEX attendance_work_date ON attendance(work_date);
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id),
        kind TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '{}',
        is_read INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        read_at TEXT
    );
    CREATE INDEX notifications_user_unread ON notifications(user_id, is_read);
    CREATE INDEX notifications_created_at ON notifications(created_at);
    CREATE TABLE activity_logs (
        id INTEGER PRIMARY KEY,
        user_id INTEGER REFERENCES users(id),
        action TEXT NOT NULL,
        entity_type TEXT NOT NULL,
        entity_id INTEGER,
        payload TEXT NOT NULL DEFAULT '{}',
        ip_address TEXT,
        user_agent TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX activity_logs_entity ON activity_logs(entity_type, entity_id);
    CREATE INDEX activity_logs_user_id ON activity_logs(user_id);
    CREATE INDEX activity_logs_created_at ON activity_logs(created_at);
    CREATE TABLE app_counters (
        name TEXT PRIMARY KEY,
        n INTEGER NOT NULL
    );
    INSERT INTO app_counters (name, n) VALUES ('activity_logs', 0), ('comments', 0);
    """
}
