// Package store keeps notifications, incidents and the work queue in a SQL
// database. One implementation serves SQLite and PostgreSQL; the dialects
// differ only in how they are opened, migrated and in placeholder syntax.
package store
