package sqlite

// SetBackupCopied sets what Backup runs between checking its copy and
// naming it dest, until the test ends.
func SetBackupCopied(cleanup func(func()), f func(dest string)) {
	old := backupCopied
	backupCopied = f
	cleanup(func() { backupCopied = old })
}
