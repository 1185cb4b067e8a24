package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/totp"
)

func TestUserChanges(t *testing.T) {
	old := nearConfig(3, 0) // user0, user1, user2
	cfg := nearConfig(4, 0) // + user3
	cfg.Users = append(cfg.Users[:1], cfg.Users[2:]...)
	cfg.Users[1].Keys = []UserKey{{File: "new", Key: bytes.Repeat([]byte{9}, 32)}} // user2 re-keyed
	got := fmt.Sprint(UserChanges(old, cfg))
	if want := "[added user3 removed user1 rekeyed user2]"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	// A not_after set on the same key is a re-keying too; no change, no attributes.
	same := nearConfig(3, 0)
	same.Users[0].Keys[0].NotAfter = time.Unix(1_900_000_000, 0)
	if got := fmt.Sprint(UserChanges(old, same)); got != "[rekeyed user0]" {
		t.Fatalf("not_after: got %s", got)
	}
	if got := UserChanges(old, nearConfig(3, 5)); len(got) != 0 {
		t.Fatalf("nothing changed: got %v", got)
	}
}

func TestUsersReport(t *testing.T) {
	cfg := nearConfig(2, 0)
	now := time.Unix(1_800_000_000, 0).UTC()
	cfg.Users[1].Keys = append(cfg.Users[1].Keys, UserKey{File: "old.key", Key: bytes.Repeat([]byte{5}, 32), NotAfter: now.Add(-time.Hour)})
	info := &DaemonInfo{}
	at := now.Add(-90 * time.Second)
	info.Admitted(AdmissionRecord{Time: at, User: "user0", Src: netip.MustParseAddrPort("198.18.0.2:40000"), Dst: netip.MustParseAddrPort("198.18.0.1:2222")})
	info.Admitted(AdmissionRecord{Time: at, User: "", Src: netip.MustParseAddrPort("198.18.0.3:40000"), Dst: netip.MustParseAddrPort("198.18.0.1:22")})
	users := Users(cfg, info, now)
	var out bytes.Buffer
	WriteUsers(&out, users, now)
	fp0, fp1 := totp.Fingerprint(cfg.Users[0].Keys[0].Key), totp.Fingerprint(cfg.Users[1].Keys[0].Key)
	want := "user0: ports 22,2222; last admitted knock: 2027-01-15T07:58:30Z (1m30s ago) from 198.18.0.2 to port 2222\n" +
		"  key " + fp0 + " k, no expiry\n" +
		"user1: ports 22; last admitted knock: never (since the daemon's info began)\n" +
		"  key " + fp1 + " k, no expiry\n" +
		"  key " + totp.Fingerprint(bytes.Repeat([]byte{5}, 32)) + " old.key, not after 2027-01-15T07:00:00Z (EXPIRED)\n"
	if out.String() != want {
		t.Fatalf("text:\n%s\nwant:\n%s", out.String(), want)
	}
	if strings.Contains(out.String(), string(cfg.Users[0].Keys[0].Key)) {
		t.Fatal("a key is printed")
	}
	b, err := json.Marshal(users)
	if err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	json.Unmarshal(b, &back)
	if len(back) != 2 || back[0]["name"] != "user0" || back[0]["last_knock"].(map[string]any)["src"] != "198.18.0.2:40000" ||
		back[1]["last_knock"] != nil || back[1]["keys"].([]any)[1].(map[string]any)["expired"] != true ||
		back[0]["keys"].([]any)[0].(map[string]any)["fingerprint"] != fp0 {
		t.Fatalf("json: %s", b)
	}
}

func TestAdmissionsReport(t *testing.T) {
	info := &DaemonInfo{}
	base := time.Unix(1_800_000_000, 0).UTC()
	for i := range MaxRecentAdmissions + 5 {
		info.Admitted(AdmissionRecord{Time: base.Add(time.Duration(i) * time.Second), User: "alice",
			Src: netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), uint16(40000+i)), Dst: netip.MustParseAddrPort("198.18.0.1:22")})
	}
	if len(info.Admissions) != MaxRecentAdmissions || info.Admissions[0].Src.Port() != 40005 {
		t.Fatalf("kept %d admissions from port %d", len(info.Admissions), info.Admissions[0].Src.Port())
	}
	// The last is open, seen by sock_diag on a dual-stack socket.
	open := []SessionTuple{{netip.MustParseAddrPort("[::ffff:198.18.0.2]:40204"), netip.MustParseAddrPort("[::ffff:198.18.0.1]:22")}}
	as := Admissions(info, open)
	if !as[len(as)-1].Open || as[len(as)-2].Open {
		t.Fatal("open marks wrong")
	}
	var out bytes.Buffer
	WriteAdmissions(&out, as, true)
	if want := "2027-01-15T08:03:24Z alice 198.18.0.2:40204 -> 198.18.0.1:22 OPEN\n"; out.String() != want {
		t.Fatalf("--open text %q, want %q", out.String(), want)
	}
	out.Reset()
	WriteAdmissions(&out, as, false)
	if strings.Count(out.String(), "\n") != MaxRecentAdmissions || !strings.HasPrefix(out.String(), "2027-01-15T08:00:05Z alice 198.18.0.2:40005 -> 198.18.0.1:22 closed\n") {
		t.Fatalf("text:\n%s", out.String()[:200])
	}
	b, _ := json.Marshal(as[len(as)-1])
	if want := `{"time":"2027-01-15T08:03:24Z","user":"alice","src":"198.18.0.2:40204","dst":"198.18.0.1:22","open":true}`; string(b) != want {
		t.Fatalf("json %s, want %s", b, want)
	}
	out.Reset()
	WriteAdmissions(&out, Admissions(&DaemonInfo{}, nil), false)
	if out.String() != "no admissions recorded\n" {
		t.Fatalf("empty: %q", out.String())
	}
}

func TestDaemonStateText(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	info := &DaemonInfo{Pid: 42, Started: now.Add(-2 * time.Hour), LastSync: now.Add(-12 * time.Second)}
	if got, want := daemonState(true, 42, info, now).Text(), "seqknockd run, pid 42, up 2h0m0s, last sync 12s ago"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// An info file of another pid (a daemon killed, another started that
	// has not written yet) is not shown as this one's.
	if got, want := daemonState(true, 43, info, now).Text(), "seqknockd run, pid 43"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got, want := daemonState(true, 0, info, now).Text(), "seqknockd run, starting (pid not written yet)"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := daemonState(false, 42, info, now).Text(); got != NoDaemon {
		t.Fatalf("not running: %q", got)
	}
	info.LastError = "netlink: boom"
	if got := daemonState(true, 42, info, now).Text(); !strings.HasSuffix(got, ", last sync FAILED: netlink: boom") {
		t.Fatalf("failed sync: %q", got)
	}
}
