package cli

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"syncagent/agent/control"
	"syncagent/queue"
)

// The file of `syncagent sites import`: CSV with a header, or JSON lines,
// told apart by its first character ('{': JSON lines). Either way every row
// is read and checked before anything is sent, and every error names its
// line. The primary checks the rest (unique IDs and users, the prefs rows,
// the hashes) and names the lines too.
//
//	sync_id,user,password_hash,stores,hardware_id,url
//	12,clinic-12,pbkdf2-sha256$600000$…,store-a;store-b,,
//
//	{"sync_id":12,"user":"clinic-12","password_hash":"pbkdf2-sha256$…","stores":["store-a","store-b"]}

// maxImportFile bounds the file read (control.MaxSitesBody bounds the
// request it becomes).
const maxImportFile = 48 << 20

// importColumns are the CSV columns; the first four are required.
var importColumns = []string{"sync_id", "user", "password_hash", "stores", "hardware_id", "url"}

// parseSites reads an import file.
func parseSites(r io.Reader) ([]control.SiteRow, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxImportFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxImportFile {
		return nil, fmt.Errorf("the file is larger than %d MiB: split it", maxImportFile>>20)
	}
	if t := bytes.TrimLeft(data, " \t\r\n\ufeff"); len(t) > 0 && t[0] == '{' {
		return parseJSONLines(data)
	}
	return parseCSV(data)
}

// lineErrors collects the errors of a file, at most maxImportErrors.
type lineErrors struct {
	list []string
	more int
}

const maxImportErrors = 20

func (e *lineErrors) add(line int, format string, args ...any) {
	if len(e.list) == maxImportErrors {
		e.more++
		return
	}
	e.list = append(e.list, fmt.Sprintf("line %d: ", line)+fmt.Sprintf(format, args...))
}

func (e *lineErrors) err() error {
	if len(e.list) == 0 {
		return nil
	}
	msg := strings.Join(e.list, "\n")
	if e.more > 0 {
		msg += fmt.Sprintf("\n… and %d more", e.more)
	}
	return errors.New(msg)
}

func parseCSV(data []byte) ([]control.SiteRow, error) {
	cr := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(data, []byte("\ufeff"))))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	var errs lineErrors
	header, err := cr.Read()
	if err == io.EOF {
		return nil, errors.New("the file is empty: want a header line (" + strings.Join(importColumns, ",") + ") and a row per site")
	}
	if err != nil {
		return nil, fmt.Errorf("line 1: %v", err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case !slices.Contains(importColumns, h):
			errs.add(1, "unknown column %q (the columns are %s)", h, strings.Join(importColumns, ", "))
		case col[h] > 0:
			errs.add(1, "column %q appears twice", h)
		}
		col[h] = i + 1
	}
	for _, h := range importColumns[:4] {
		if col[h] == 0 {
			errs.add(1, "the header has no %q column (it needs %s)", h, strings.Join(importColumns[:4], ", "))
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	get := func(rec []string, name string) string {
		if i := col[name]; i > 0 && i <= len(rec) {
			return strings.TrimSpace(rec[i-1])
		}
		return ""
	}
	var rows []control.SiteRow
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				errs.add(pe.StartLine, "%v", pe.Err)
				if pe.Err != csv.ErrFieldCount {
					break // the reader cannot go on after a quoting error
				}
				continue
			}
			return nil, err
		}
		line, _ := cr.FieldPos(0) // only after a record was read: it panics after an error
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if len(rec) != len(header) {
			errs.add(line, "%d fields, the header has %d", len(rec), len(header))
			continue
		}
		id, err := strconv.Atoi(get(rec, "sync_id"))
		if err != nil {
			errs.add(line, "sync_id %q is not a number", get(rec, "sync_id"))
			continue
		}
		row := control.SiteRow{SyncID: id, User: get(rec, "user"), PasswordHash: get(rec, "password_hash"), HardwareID: get(rec, "hardware_id"), URL: get(rec, "url"), Line: line}
		for _, s := range strings.Split(get(rec, "stores"), ";") {
			if s = strings.TrimSpace(s); s != "" {
				row.Stores = append(row.Stores, s)
			}
		}
		if checkImportRow(&errs, row) {
			rows = append(rows, row)
		}
		if len(rows) > queue.MaxRegistryEdit {
			return nil, fmt.Errorf("line %d: more than %d rows: split the file", line, queue.MaxRegistryEdit)
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, errors.New("the file has a header but no rows")
	}
	return rows, nil
}

func parseJSONLines(data []byte) ([]control.SiteRow, error) {
	var errs lineErrors
	var rows []control.SiteRow
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if line == 1 {
			text = bytes.TrimPrefix(text, []byte("\ufeff"))
		}
		if len(text) == 0 {
			continue
		}
		var row control.SiteRow
		dec := json.NewDecoder(bytes.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&row); err != nil {
			errs.add(line, "not a site row: %v (want {\"sync_id\":12,\"user\":…,\"password_hash\":…,\"stores\":[…]})", err)
			continue
		}
		if dec.More() {
			errs.add(line, "one JSON object per line: something follows the object")
			continue
		}
		if row.Line != 0 {
			errs.add(line, "unknown field \"line\"")
			continue
		}
		row.Line = line
		if checkImportRow(&errs, row) {
			rows = append(rows, row)
		}
		if len(rows) > queue.MaxRegistryEdit {
			return nil, fmt.Errorf("line %d: more than %d rows: split the file", line, queue.MaxRegistryEdit)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %v", line+1, err)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, errors.New("the file has no rows")
	}
	return rows, nil
}

// checkImportRow checks a row's shape (the registry's rules) and reports
// whether it passed.
func checkImportRow(errs *lineErrors, r control.SiteRow) bool {
	err := queue.CheckSiteConfig(queue.SiteConfig{SyncID: r.SyncID, User: r.User, PasswordHash: r.PasswordHash, Stores: r.Stores, HardwareID: r.HardwareID, URL: r.URL})
	if err != nil {
		errs.add(r.Line, "%v", err)
		return false
	}
	return true
}
