package bulk

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/bulkpipe/bulkpipe/pkg/fhirclient"
)

// ExportOperation is one $export operation a server's CapabilityStatement declares.
type ExportOperation struct {
	Level      Level    // "" when neither its place nor its definition tells
	Definition string   // the canonical URL as declared ("" when none)
	Params     []string // its declared input parameters; nil when unknown (nothing to compare with)

	defID    string // the id to read a server-specific definition from ([base]/OperationDefinition/ID)
	atSystem bool   // an "export" at rest.operation: the level is its definition's
}

// Capabilities is what a server's CapabilityStatement says about bulk export: the export
// operations it declares, at which level, with which parameters. A statement that declares no
// export operation (many servers publish thin ones) says nothing, and Check then finds nothing.
type Capabilities struct {
	Operations []ExportOperation
	// Notes are definitions that could not be read (Resolve): they leave those operations'
	// parameters unknown, which is not worth more than a diagnostic line.
	Notes []string
}

// igDefinition matches the canonical URLs of the Bulk Data IG's three OperationDefinitions
// (uv since STU1; us in the STU1 ballots), with an optional |version.
var igDefinition = regexp.MustCompile(`^https?://hl7\.org/fhir/(?:uv|us)/bulkdata/OperationDefinition/(export|patient-export|group-export)(?:\|(.*))?$`)

// igParams are the input parameters each version of the IG defines (every level has the same
// ones, except patient, which the system-level export lacks). An unversioned canonical means the
// current version: the largest set, so that a parameter is called undeclared only when no
// version defines it.
var (
	igParamsSTU1 = []string{ParamOutputFormat, ParamSince, ParamType, ParamTypeFilter}
	igParamsSTU2 = append(slices.Clip(igParamsSTU1), ParamElements, ParamPatient, ParamIncludeAssociatedData)
	igParamsSTU3 = append(slices.Clip(igParamsSTU2), ParamUntil, ParamOrganizeOutputBy, ParamAllowPartialManifests)
)

// fhirID is the FHIR id pattern: what may follow OperationDefinition/ in a URL we read.
var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// maxDefinitions bounds the OperationDefinitions Resolve reads, whatever a statement lists.
const maxDefinitions = 6

// ReadCapabilities reads the export operations of a CapabilityStatement (or a DSTU2
// Conformance, whose definition is a Reference). Wrong JSON types are skipped, never fatal: the
// statement only informs the kickoff. Operations listed under rest.resource Patient or Group are
// at that level; those under rest.operation take their level from the IG canonical they name,
// else from their name (patient-export, group-export, export).
func ReadCapabilities(statement []byte) *Capabilities {
	c := &Capabilities{}
	if !gjson.ValidBytes(statement) {
		return c
	}
	gjson.GetBytes(statement, "rest").ForEach(func(_, rest gjson.Result) bool {
		rest.Get("operation").ForEach(func(_, op gjson.Result) bool {
			c.add("", op)
			return true
		})
		rest.Get("resource").ForEach(func(_, res gjson.Result) bool {
			t := res.Get("type").String()
			res.Get("operation").ForEach(func(_, op gjson.Result) bool {
				c.add(t, op)
				return true
			})
			return true
		})
		return true
	})
	return c
}

// add records op, declared under resource type on ("" = the system), if it is an export.
func (c *Capabilities) add(on string, op gjson.Result) {
	name := strings.TrimPrefix(op.Get("name").String(), "$")
	def := op.Get("definition")
	if def.IsObject() { // DSTU2: a Reference
		def = def.Get("reference")
	}
	canon := strings.TrimSpace(def.String())
	igID, version := "", ""
	if m := igDefinition.FindStringSubmatch(canon); m != nil {
		igID, version = m[1], m[2]
	}
	// Only the three export operations count: a server's $export-poll-status (HAPI) is not one.
	if !slices.Contains([]string{"export", "patient-export", "group-export"}, name) && igID == "" {
		return
	}
	e := ExportOperation{Definition: canon}
	switch {
	case on == "Patient":
		e.Level = LevelPatient
	case on == "Group":
		e.Level = LevelGroup
	case on != "":
		return // an export declared on another type is not one the IG defines
	case igID != "" || name != "export":
		e.Level = levelOf(igID, name)
	default:
		// "export" at rest.operation names no level for sure: servers list their Group export
		// there too. Its definition, once read, tells; until then the level is unknown.
		e.atSystem = true
	}
	if igID != "" {
		e.Params = igParams(e.Level, version)
	} else if id := definitionID(canon); id != "" {
		e.defID = id
	}
	c.Operations = append(c.Operations, e)
}

// levelOf is the level an operation declared at the system names by its IG id or its name.
func levelOf(igID, name string) Level {
	for _, n := range []string{igID, name} {
		switch n {
		case "export":
			return LevelSystem
		case "patient-export":
			return LevelPatient
		case "group-export":
			return LevelGroup
		}
	}
	return ""
}

// igParams are the parameters of the IG's OperationDefinitions at version ("" = current) for
// an export at level: by where the server lists it, since some list the IG's system-level
// definition under Patient.
func igParams(level Level, version string) []string {
	var ps []string
	switch {
	case strings.HasPrefix(version, "0.") || strings.HasPrefix(version, "1."):
		ps = igParamsSTU1
	case strings.HasPrefix(version, "2."):
		ps = igParamsSTU2
	default:
		ps = igParamsSTU3
	}
	if level == LevelSystem {
		ps = slices.DeleteFunc(slices.Clone(ps), func(p string) bool { return p == ParamPatient })
	}
	return slices.Clone(ps)
}

// definitionID is the id of a server-specific definition URL ".../OperationDefinition/ID[|v]",
// or "" when it names none that can be read from the server.
func definitionID(canon string) string {
	canon, _, _ = strings.Cut(canon, "|")
	canon, _, _ = strings.Cut(canon, "?")
	i := strings.LastIndex(canon, "OperationDefinition/")
	if i < 0 {
		return ""
	}
	id := canon[i+len("OperationDefinition/"):]
	if !fhirID.MatchString(id) {
		return ""
	}
	return id
}

// ServerCapabilities reads the export operations of a server's CapabilityStatement and the
// server's own OperationDefinitions they name, each once, through c: what a kickoff is checked
// against (Check).
func ServerCapabilities(ctx context.Context, c *fhirclient.Client, statement []byte) (*Capabilities, error) {
	caps := ReadCapabilities(statement)
	return caps, caps.Resolve(ctx, c.OperationDefinition)
}

// Resolve reads the server-specific OperationDefinitions the statement names, through read
// (which GETs [base]/OperationDefinition/ID: a definition is only ever read from the server
// itself, never from wherever its URL points), and takes their parameters and levels. A
// definition that cannot be read leaves its operation's parameters unknown, with a note;
// only a cancelled ctx is an error.
func (c *Capabilities) Resolve(ctx context.Context, read func(ctx context.Context, id string) ([]byte, error)) error {
	defs := map[string]*OperationDefinition{}
	for i := range c.Operations {
		op := &c.Operations[i]
		if op.defID == "" {
			continue
		}
		d, seen := defs[op.defID]
		if !seen {
			if len(defs) >= maxDefinitions {
				continue
			}
			b, err := read(ctx, op.defID)
			if err := ctx.Err(); err != nil {
				return err
			}
			if err == nil {
				d, err = ParseOperationDefinition(b)
			}
			if err != nil {
				what := "export"
				if op.Level != "" {
					what = op.Level.Name() + " export"
				}
				c.Notes = append(c.Notes, fmt.Sprintf("the definition of the server's %s (%s) could not be read: %v", what, op.Definition, err))
			}
			defs[op.defID] = d
		}
		if d == nil {
			continue
		}
		op.Params = slices.Clone(d.Params)
		if op.atSystem {
			op.Level = d.level()
		}
	}
	return nil
}

// OperationDefinition is what Resolve takes from a server's own definition of $export.
type OperationDefinition struct {
	Code         string   // the operation's name (export)
	System, Type bool     // invocable at the system, and at the type level
	Instance     bool     // invocable on an instance
	Resource     []string // the types it applies to
	Params       []string // input parameters, in their order, each once
}

// level is the level a definition allows: the system, else Group on an instance, else Patient
// on the type; "" when it allows none of them.
func (d *OperationDefinition) level() Level {
	switch {
	case d.System:
		return LevelSystem
	case d.Instance && slices.Contains(d.Resource, "Group"):
		return LevelGroup
	case d.Type && slices.Contains(d.Resource, "Patient"):
		return LevelPatient
	}
	return ""
}

// ParseOperationDefinition reads an OperationDefinition (FHIR R4 and later: resource is a list;
// STU3's type a list of types is read as resource). Wrong JSON types in its members are
// skipped; anything but a JSON object with resourceType OperationDefinition is an error.
func ParseOperationDefinition(b []byte) (*OperationDefinition, error) {
	if !gjson.ValidBytes(b) || !gjson.ParseBytes(b).IsObject() {
		return nil, fmt.Errorf("not a JSON object")
	}
	rt := gjson.GetBytes(b, "resourceType")
	if rt.String() != "OperationDefinition" {
		return nil, fmt.Errorf("expected an OperationDefinition, got resourceType %q", rt.String())
	}
	d := &OperationDefinition{Code: gjson.GetBytes(b, "code").String()}
	d.System = gjson.GetBytes(b, "system").Type == gjson.True
	d.Instance = gjson.GetBytes(b, "instance").Type == gjson.True
	switch t := gjson.GetBytes(b, "type"); {
	case t.Type == gjson.True:
		d.Type = true
	case t.IsArray(): // STU3: the types it applies to at type level
		d.Type = len(t.Array()) > 0
		d.Resource = appendStrings(d.Resource, t)
	}
	d.Resource = appendStrings(d.Resource, gjson.GetBytes(b, "resource"))
	ps := gjson.GetBytes(b, "parameter")
	if ps.IsObject() { // one parameter where a list belongs: read it as a list of one
		ps = gjson.Parse("[" + ps.Raw + "]")
	}
	ps.ForEach(func(_, p gjson.Result) bool {
		name := p.Get("name").String()
		if p.Get("use").String() == "in" && name != "" && !slices.Contains(d.Params, name) {
			d.Params = append(d.Params, name)
		}
		return true
	})
	if d.Params == nil {
		d.Params = []string{} // declared, and declares none
	}
	return d, nil
}

// appendStrings appends the string values of a JSON array (or of one string) to dst.
func appendStrings(dst []string, r gjson.Result) []string {
	if r.Type == gjson.String {
		return append(dst, r.Str)
	}
	r.ForEach(func(_, v gjson.Result) bool {
		if v.Type == gjson.String && !slices.Contains(dst, v.Str) {
			dst = append(dst, v.Str)
		}
		return true
	})
	return dst
}

// Name is how messages name a level: "system-level", "Patient-level", "Group-level".
func (l Level) Name() string {
	switch l {
	case LevelSystem:
		return "system-level"
	case LevelPatient:
		return "Patient-level"
	case LevelGroup:
		return "Group-level"
	}
	return "unknown-level"
}

// UnsupportedLevelError is a kickoff at a level for which the server declares no export, while
// it declares exports at other levels: the server would refuse it, maybe only after a long wait
// (a 429 queue, a slow 404), so the kickoff is refused before it is sent.
type UnsupportedLevelError struct {
	Base     string  // the FHIR base, naming the server
	Level    Level   // the level asked for
	Declared []Level // the levels the server declares, in the order of the statement
}

func (e *UnsupportedLevelError) Error() string {
	names := make([]string, len(e.Declared))
	for i, l := range e.Declared {
		names[i] = l.Name()
	}
	msg := fmt.Sprintf("%s declares only %s export in its CapabilityStatement: a %s export would be refused",
		e.Base, strings.Join(names, " and "), e.Level.Name())
	switch {
	case slices.Contains(e.Declared, LevelGroup):
		msg += "; export a Group instead (" + e.Base + "/Group/ID)"
	case slices.Contains(e.Declared, LevelPatient):
		msg += "; export at Patient level instead (" + e.Base + "/Patient)"
	case slices.Contains(e.Declared, LevelSystem):
		msg += "; export at system level instead (" + e.Base + ")"
	}
	return msg
}

// Undeclared is a parameter a kickoff sends that the server's export at that level does not
// declare: the server may refuse it, or (worse) ignore it.
type Undeclared struct {
	Param       string
	Level       Level
	Definitions []string // the definitions of the server's operations at that level
}

// Check compares a prepared kickoff with what the server declares. It refuses (an
// *UnsupportedLevelError) a kickoff at a level the server declares no export for, when every
// export it declares has a known level and none is system-level; and it lists the parameters sent that the server's
// export at that level does not declare, when all of them declare their parameters. A statement
// that declares no export, or exports whose parameters are unknown, gets neither.
func (c *Capabilities) Check(pk *PreparedKickoff) ([]Undeclared, error) {
	if c == nil || len(c.Operations) == 0 {
		return nil, nil
	}
	var declared []Level
	var here []ExportOperation
	for _, op := range c.Operations {
		if op.Level == "" {
			declared = nil // one export of unknown level: any level may be it
			break
		}
		if !slices.Contains(declared, op.Level) {
			declared = append(declared, op.Level)
		}
	}
	for _, op := range c.Operations {
		if op.Level == pk.Level {
			here = append(here, op)
		}
	}
	if len(here) == 0 {
		// Many servers list only the IG's system-level export at rest.operation to say "bulk
		// export here", and serve Group exports too: only a statement that names levels other
		// than the system's, and not the one asked for, is taken at its word.
		if len(declared) > 0 && !slices.Contains(declared, LevelSystem) {
			return nil, &UnsupportedLevelError{Base: pk.Base, Level: pk.Level, Declared: declared}
		}
		return nil, nil
	}
	var params, defs []string
	for _, op := range here {
		if op.Params == nil {
			return nil, nil // this one does not say: nothing to compare with
		}
		params = append(params, op.Params...)
		if op.Definition != "" && !slices.Contains(defs, op.Definition) {
			defs = append(defs, op.Definition)
		}
	}
	var out []Undeclared
	for _, name := range pk.ParamNames {
		if !slices.Contains(params, name) {
			out = append(out, Undeclared{Param: name, Level: pk.Level, Definitions: defs})
		}
	}
	return out, nil
}
