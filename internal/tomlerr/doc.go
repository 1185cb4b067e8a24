// Package tomlerr gives seqknock's two TOML configs (seqknockd's and the
// client's) one way to decode strictly and to report a mistake as one line
// naming the file, the line and the field:
//
//	config /etc/seqknock/seqknockd.toml:8: service[1].port: 22 already protected by service[0]
//
// It finds lines by reading the text itself, since the TOML decoder reports
// positions only for syntax errors.
package tomlerr
