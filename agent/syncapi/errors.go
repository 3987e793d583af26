package syncapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error codes of the v5 protocol. Clients must accept unknown codes as
// strings; the ones marked "ours" are syncagent's additions.
const (
	CodeSiteNameNotFound      = "site_name_not_found"
	CodeSiteIncorrectPassword = "site_incorrect_password"
	CodeSiteIncorrectHWID     = "site_incorrect_hardware_id"
	CodeSiteHasNoStore        = "site_has_no_store"
	CodeSiteAuthTimeout       = "site_auth_timeout"
	CodeAPIVersion            = "api_version_incompatible"
	CodeSyncIsRunning         = "sync_is_running"
	CodeIntegrationError      = "integration_error"

	CodeBadRequest       = "bad_request"          // ours: malformed body or query
	CodeBodyTooLarge     = "body_too_large"       // ours: body over the server's limit
	CodeBatchTooLarge    = "batch_too_large"      // ours: more records than the server takes at once
	CodeStoreNotActive   = "store_not_active"     // ours: a pushed record's store is not active on the pushing site
	CodeCentralFromSite  = "central_data_refused" // ours: a site pushed data without a store_ID
	CodeSyncDisabled     = "sync_disabled"        // ours: the primary's own prefs disable sync
	CodeNotFound         = "not_found"            // ours: no such endpoint
	CodeMethodNotAllowed = "method_not_allowed"   // ours
	CodeStorage          = "storage_error"        // ours: the primary could not make data durable
	CodeInvalidRecord    = "invalid_record"       // ours: a record that fails validation
)

// ErrorInfo is the inner object of a v5 error body.
type ErrorInfo struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data"`
}

// ErrorBody is the body of every non-2xx response.
type ErrorBody struct {
	Error ErrorInfo `json:"error"`
}

// Error is a v5 error: an HTTP status with a code and message. The client
// returns it for any non-2xx response; the server writes it.
type Error struct {
	Status  int
	Code    string
	Message string
	Data    json.RawMessage // the body's "data", when the server sent any
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Code, e.Status)
	}
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status)
}

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// IsAuth reports whether err is a refusal of this site's credentials or
// hardware ID: retrying will not help until someone changes something.
func IsAuth(err error) bool {
	e, ok := AsError(err)
	if !ok {
		return false
	}
	switch e.Code {
	case CodeSiteNameNotFound, CodeSiteIncorrectPassword, CodeSiteIncorrectHWID, CodeSiteHasNoStore, CodeAPIVersion:
		return true
	}
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

// Advice says, for a technician, what to do about a refusal from the primary.
func Advice(err error) string {
	e, ok := AsError(err)
	if !ok {
		return ""
	}
	switch e.Code {
	case CodeSiteNameNotFound:
		return "the primary has no site with this user name: check [[sync_with]] user on both sides"
	case CodeSiteIncorrectPassword:
		return "the password differs from the primary's: run `syncagent passwd` and paste password_sha256 here and password_hash on the primary"
	case CodeSiteIncorrectHWID:
		return "the primary pinned this site to another box: ask the central team to run `syncagent sites clear-hwid ID` on the primary"
	case CodeSiteHasNoStore:
		return "the primary lists no store for this site: add stores to its row on the primary"
	case CodeSiteAuthTimeout:
		return "too many failed logins: wait, then fix the credentials"
	case CodeAPIVersion:
		return "the primary speaks another sync API version: upgrade one side"
	}
	return ""
}
