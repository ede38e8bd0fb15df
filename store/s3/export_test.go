package s3

// SetPageSize makes AuditLog list n objects at a time, so a test reaches
// a second page without writing a thousand records.
func SetPageSize(s *Store, n int32) { s.pageSize = n }
