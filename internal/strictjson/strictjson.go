// Package strictjson is the one reader of JSON request bodies: the checks encoding/json leaves
// out that a security service needs (DuplicateKey, Parse), and Object, which reads a body's
// members one at a time, each refusal a KPS error naming the member by its path. The HTTP API
// (api.Object) and iam's token request read with it. It imports the domain package only.
package strictjson

import (
	"bytes"
	"encoding/json"
)

// DuplicateKey returns the first object member name that appears twice in the same object of
// the JSON document data, and whether there is one. encoding/json keeps the last of duplicate
// members silently; a proxy, WAF or audit tool that keeps the first would then judge a
// different request than the one served (RFC 8259 §4, RFC 7493 §2.3), so bodies with
// duplicates are refused. data must already be known to be valid JSON.
func DuplicateKey(data []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	// One frame per open object or array: an object's frame holds its names and whether the
	// next token is a name.
	type frame struct {
		names  map[string]bool
		isName bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.names != nil && top.isName {
			if name, ok := tok.(string); ok {
				if top.names[name] {
					return name, true
				}
				top.names[name] = true
				top.isName = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			if top != nil && top.names != nil {
				top.isName = true
			}
			stack = append(stack, &frame{names: map[string]bool{}, isName: true})
		case json.Delim('['):
			if top != nil && top.names != nil {
				top.isName = true
			}
			stack = append(stack, &frame{})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		default:
			if top != nil && top.names != nil {
				top.isName = true
			}
		}
	}
}
