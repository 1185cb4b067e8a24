package integration

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// mdLink is a Markdown link's target; docName a Markdown file named in
// any text (README.md, docs/design.md).
var (
	mdLink  = regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	docName = regexp.MustCompile(`\b(?:docs/)?[A-Za-z][A-Za-z0-9_-]*\.md\b`)
)

// TestNoReferenceOutsideTheRepository: every relative Markdown link
// resolves to a file of the repository, and every Markdown file named in
// the code, the man pages or the docs exists in it (a note kept outside
// the repository is no reference for its readers).
func TestNoReferenceOutsideTheRepository(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]bool{}
	var texts []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		switch {
		case strings.HasSuffix(rel, ".md"):
			docs[rel] = true
			docs[filepath.Base(rel)] = true
			texts = append(texts, rel)
		case strings.HasSuffix(rel, ".go") && !strings.HasSuffix(rel, "refs_test.go"),
			strings.HasPrefix(rel, "man/"), strings.HasPrefix(rel, "scripts/"):
			texts = append(texts, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !docs["README.md"] || !docs["docs/design.md"] {
		t.Fatalf("walked %s but found no README.md or docs/design.md", root)
	}
	checked := 0
	for _, rel := range texts {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if strings.HasSuffix(rel, ".md") {
			for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				checked++
				if _, err := os.Stat(filepath.Join(root, filepath.Dir(rel), target)); err != nil {
					t.Errorf("%s links to %s, which is not in the repository", rel, target)
				}
			}
		}
		for _, name := range docName.FindAllString(text, -1) {
			checked++
			if !docs[name] {
				t.Errorf("%s names %s, which is not in the repository", rel, name)
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d references checked: the patterns find nothing", checked)
	}
}

// TestREADMEFirstThingsOnly: the README holds what a newcomer reads first,
// at most 300 lines; the rest is in docs/ and the man pages.
func TestREADMEFirstThingsOnly(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > 300 {
		t.Errorf("README.md is %d lines, over 300: move the detail to docs/ or the man pages", n)
	}
}
