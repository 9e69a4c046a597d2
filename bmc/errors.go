package bmc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/stmcginnis/gofish/common"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc/ipmilan"
)

// Kinds of failure. Test with errors.Is.
var (
	// ErrAuth: the BMC answered but refused the user name or password.
	ErrAuth = errors.New("BMC refused the credentials")
	// ErrCipher: the BMC does not offer the configured IPMI cipher suite.
	ErrCipher = errors.New("BMC does not offer the cipher suite")
	// ErrUnreachable: nothing answers at the BMC's address.
	ErrUnreachable = errors.New("BMC unreachable")
	// ErrTimeout: the BMC did not finish in time (it does not answer, or
	// answers slowly).
	ErrTimeout = errors.New("BMC did not answer in time")
	// ErrTLS: the Redfish BMC's certificate is not trusted.
	ErrTLS = errors.New("BMC certificate not trusted")
	// ErrBadResponse: the BMC answered something that makes no sense.
	ErrBadResponse = errors.New("BMC answered nonsense")
	// ErrPowerMismatch: the BMC accepted a power change but does not
	// report the expected state (it lies, or the machine does not obey).
	ErrPowerMismatch = errors.New("BMC power state does not match")
	// ErrUnsupported: the BMC does not offer this operation.
	ErrUnsupported = errors.New("not supported by the BMC")
	// ErrBackoff: the BMC failed recently and the call would have to wait
	// past its deadline for the back-off to end.
	ErrBackoff = errors.New("BMC in back-off after errors")
	// ErrBusy: the call's deadline passed while it waited for the BMC's
	// turn (other calls to the same BMC) or its rate limit. It says nothing
	// about the BMC's health.
	ErrBusy = errors.New("BMC busy with other calls")
	// ErrClosed: the client or manager was closed.
	ErrClosed = errors.New("BMC client closed")
)

// Error is a failed call to one BMC.
type Error struct {
	// BMC is the endpoint ("ipmi://127.0.0.1:623"), never the credentials.
	BMC string
	// Op is the operation ("power-status", "set-power", ...).
	Op string
	// Kind is one of the Err* kinds above, or nil.
	Kind error
	// Err is the underlying failure, with any password removed.
	Err error

	callerDeadline bool // the caller's deadline, not the BMC, cut the call short
	reason         string
}

// Reason is one short line a person can act on ("wrong user or password
// (IPMI, cipher suite 3)", "no answer from 127.0.0.1:623 in 20s"), for
// what is stored on a host and shown to operators; Error is the full
// detail, for logs. Neither ever holds a password.
func (e *Error) Reason() string {
	if e.reason != "" {
		return e.reason
	}
	proto, addr, _ := strings.Cut(e.BMC, "://")
	return reasonFor(e.Kind, reasonCtx{protocol: rackcloud.BMCProtocol(proto), address: addr, op: e.Op}, e.Err)
}

// Reason returns err's short line: (*Error).Reason for BMC errors, else
// the first line of err's text, shortened.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var be *Error
	if errors.As(err, &be) {
		return be.Reason()
	}
	return firstLine(err.Error())
}

// reasonCtx is what a reason may name besides the failure: never the
// credentials.
type reasonCtx struct {
	protocol    rackcloud.BMCProtocol
	address     string // host:port
	op          string
	cipherSuite string
	timeout     time.Duration
}

// reasonFor writes the short line of a failure of kind with detail err.
// It is pure.
func reasonFor(kind error, rc reasonCtx, err error) string {
	switch kind {
	case ErrAuth:
		if rc.protocol == rackcloud.BMCIPMI && rc.cipherSuite != "" {
			return fmt.Sprintf("wrong user or password (IPMI, cipher suite %s)", rc.cipherSuite)
		}
		if rc.protocol == rackcloud.BMCRedfish {
			return "wrong user or password (Redfish)"
		}
		return "wrong user or password"
	case ErrCipher:
		return fmt.Sprintf("the BMC does not offer IPMI cipher suite %s", rc.cipherSuite)
	case ErrTimeout:
		if rc.timeout > 0 {
			return fmt.Sprintf("no answer from %s in %s", rc.address, rc.timeout)
		}
		return fmt.Sprintf("no answer from %s in time", rc.address)
	case ErrUnreachable:
		switch {
		case err == nil:
		case errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(strings.ToLower(err.Error()), "connection refused"):
			return "refused the connection at " + rc.address
		case errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) ||
			strings.Contains(strings.ToLower(err.Error()), "no route to host") ||
			strings.Contains(strings.ToLower(err.Error()), "network is unreachable") ||
			strings.Contains(strings.ToLower(err.Error()), "could not open socket"):
			return "no route to " + rc.address
		}
		var de *net.DNSError
		if errors.As(err, &de) {
			return "cannot resolve " + de.Name
		}
		return "nothing answers at " + rc.address
	case ErrTLS:
		return "TLS: certificate not trusted (" + tlsReason(err, rc.address) + ")"
	case ErrBadResponse:
		return "the BMC answered nonsense: " + detailOf(err, kind)
	case ErrPowerMismatch:
		return "power state does not match: " + detailOf(err, kind)
	case ErrUnsupported:
		if rc.op != "" {
			return rc.op + " not supported by the BMC"
		}
		return "not supported by the BMC"
	case ErrBackoff:
		return "waiting after errors: " + detailOf(err, kind)
	case ErrBusy:
		return "busy with other calls"
	case ErrClosed:
		return "BMC client closed"
	}
	if err == nil {
		return "BMC call failed"
	}
	return firstLine(err.Error())
}

// tlsReason names why a certificate is not trusted.
func tlsReason(err error, address string) string {
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		return "signed by an unknown authority"
	case errors.As(err, &he):
		return "not valid for " + he.Host
	case errors.As(err, &ci):
		if ci.Reason == x509.Expired {
			return "expired or not yet valid"
		}
		return "invalid certificate"
	case strings.Contains(err.Error(), "unknown authority"):
		return "signed by an unknown authority"
	case strings.Contains(err.Error(), "expired"):
		return "expired or not yet valid"
	}
	return "at " + address
}

// detailOf is err's text without its kind's own words, on one short line.
func detailOf(err error, kind error) string {
	if err == nil {
		return kind.Error()
	}
	s := err.Error()
	s = strings.TrimPrefix(s, kind.Error()+": ")
	return firstLine(s)
}

// maxReason is the longest short line.
const maxReason = 120

// firstLine is the first non-empty line of s, cut to maxReason
// characters.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			s = l
			break
		}
	}
	s = strings.TrimSpace(s)
	if r := []rune(s); len(r) > maxReason {
		s = string(r[:maxReason-3]) + "..."
	}
	return s
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bmc %s %s", e.BMC, e.Op)
	if e.Kind != nil {
		b.WriteString(": ")
		b.WriteString(e.Kind.Error())
	}
	if e.Err != nil {
		msg := e.Err.Error()
		if e.Kind != nil {
			// A detail that wraps the kind itself does not say it twice.
			msg = strings.TrimPrefix(msg, e.Kind.Error()+": ")
		}
		b.WriteString(": ")
		b.WriteString(msg)
	}
	return b.String()
}

// Unwrap exposes the kind and the underlying error to errors.Is/As.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// result is the metric label for err's kind.
func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrAuth):
		return "auth"
	case errors.Is(err, ErrCipher):
		return "cipher"
	case errors.Is(err, ErrUnreachable):
		return "unreachable"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrTLS):
		return "tls"
	case errors.Is(err, ErrBadResponse):
		return "bad_response"
	case errors.Is(err, ErrPowerMismatch):
		return "power_mismatch"
	case errors.Is(err, ErrUnsupported):
		return "unsupported"
	case errors.Is(err, ErrBackoff):
		return "backoff"
	case errors.Is(err, ErrBusy):
		return "busy"
	case errors.Is(err, ErrClosed):
		return "closed"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}

// healthKind reports whether err is a failure of the BMC, which marks it
// unhealthy and backs it off. Caller cancellation, waiting for the BMC's
// turn, back-off itself, unsupported operations and the caller's own
// deadline are not.
func healthKind(err error) bool {
	var be *Error
	if errors.As(err, &be) && be.callerDeadline {
		return false
	}
	switch result(err) {
	case "ok", "canceled", "unsupported", "backoff", "busy", "closed":
		return false
	}
	return true
}

// ipmitool's messages, by kind. ipmitool prints the same "Unable to
// establish" for a wrong password and for a BMC that never answers; the
// caller tells them apart with an RMCP ping (see classifyIPMI).
var (
	ipmiCipherMsgs = []string{
		"invalid authentication algorithm",
		"invalid integrity algorithm",
		"invalid confidentiality algorithm",
		"no matching cipher suite",
		"invalid cipher suite",
		"unsupported cipher suite",
	}
	ipmiAuthMsgs = []string{
		"rakp 2 hmac is invalid",
		"rakp 2 message indicates an error",
		"unauthorized name",
		"invalid user name",
		"insufficient privilege",
	}
	ipmiSessionMsgs = []string{
		"unable to establish ipmi v2 / rmcp+ session",
		"unable to establish lan session",
		"unable to establish ipmi v1.5 / rmcp session",
	}
	ipmiUnreachableMsgs = []string{
		"unable to get channel authentication capabilities",
		"get auth capabilities error",
		"no response from remote controller",
		"address lookup for",
		"connection refused",
		"could not open socket", // connect(2) failed: no route
	}
)

// classifyNative finds the kind of an ipmilan failure, or nil. It comes
// first: when ipmilan failed and bmclib asked ipmitool too, the error
// holds both, and ipmilan's is the exact one.
func classifyNative(err error) error {
	switch {
	case errors.Is(err, ipmilan.ErrAuth):
		return ErrAuth
	case errors.Is(err, ipmilan.ErrCipher):
		return ErrCipher
	case errors.Is(err, ipmilan.ErrUnreachable):
		return ErrUnreachable
	case errors.Is(err, ipmilan.ErrBadResponse):
		return ErrBadResponse
	}
	return nil
}

// ipmiClass is what ipmitool's output says about a failure.
type ipmiClass int

const (
	ipmiOther       ipmiClass = iota
	ipmiCipher                // the suite was refused
	ipmiAuth                  // credentials refused explicitly
	ipmiSession               // no session: wrong credentials or no BMC
	ipmiUnreachable           // no BMC answered
)

// classifyIPMIText sorts an ipmitool failure by its output. It is pure and
// fuzzed.
func classifyIPMIText(out string) ipmiClass {
	s := strings.ToLower(out)
	has := func(msgs []string) bool {
		for _, m := range msgs {
			if strings.Contains(s, m) {
				return true
			}
		}
		return false
	}
	switch {
	case has(ipmiCipherMsgs):
		return ipmiCipher
	case has(ipmiUnreachableMsgs):
		return ipmiUnreachable
	case has(ipmiSessionMsgs):
		if has(ipmiAuthMsgs) {
			return ipmiAuth
		}
		return ipmiSession
	case has(ipmiAuthMsgs):
		return ipmiAuth
	}
	return ipmiOther
}

// status401 finds an HTTP 401 in flattened error text, not the digits
// of a port or an address.
var status401 = regexp.MustCompile(`(^|[^0-9.:])401([^0-9]|$)`)

// classifyRedfish sorts a Redfish (gofish/net/http) failure.
func classifyRedfish(err error) error {
	var ce *common.Error
	if errors.As(err, &ce) {
		switch ce.HTTPReturnedStatusCode {
		case 401, 403:
			return ErrAuth
		case 404, 405, 501:
			return ErrUnsupported
		}
		if ce.HTTPReturnedStatusCode == 0 {
			return ErrBadResponse
		}
	}
	var ue x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	var cv *tls.CertificateVerificationError
	if errors.As(err, &ue) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &cv) {
		return ErrTLS
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrTimeout
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return ErrUnreachable
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return ErrUnreachable
	}
	// bmclib flattens some errors to text. A deadline is a timeout
	// whatever else the text says, and 401 counts only as a number of
	// its own: the URL in the text has a port (127.0.0.1:40155).
	s := strings.ToLower(err.Error())
	switch {
	case strings.Contains(s, "timeout") || strings.Contains(s, "deadline exceeded"):
		return ErrTimeout
	case status401.MatchString(s) || strings.Contains(s, "unauthorized") || strings.Contains(s, "not authenticated"):
		return ErrAuth
	case strings.Contains(s, "x509:") || strings.Contains(s, "certificate"):
		return ErrTLS
	case strings.Contains(s, "connection refused") || strings.Contains(s, "no route to host"):
		return ErrUnreachable
	case strings.Contains(s, "invalid character") || strings.Contains(s, "unexpected end of json") || strings.Contains(s, "cannot unmarshal"):
		return ErrBadResponse
	}
	return nil
}

// redact removes secret from s.
func redact(s string, secret Secret) string {
	if p := secret.Reveal(); len(p) >= 3 {
		s = strings.ReplaceAll(s, p, "[REDACTED]")
	}
	return s
}

// redactErr returns err, or a plain error with the same text minus the
// password when the text held it (the chain is dropped so that nothing
// can print the original).
func redactErr(err error, secret Secret) error {
	if err == nil {
		return nil
	}
	msg := redact(err.Error(), secret)
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}
