"""Django's PostgreSQL backend that fails fast while the database is down (ENGINE "notifications.database")."""
