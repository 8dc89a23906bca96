package ami

import (
	"net/url"
	"strconv"
	"strings"

	"gureum/api"
)

// FilterFromQuery reads a Describe filter from the query string of
// GET /images, so that the REST handler and the CLI agree on names:
//
//	image-id=ami-…        repeatable, or comma-separated
//	owner=self|gureum|ID  repeatable, or comma-separated
//	executable-by=self|all|ID
//	name=PATTERN          shell wildcards * and ?
//	is-public=true|false
//
// An unknown parameter is InvalidParameterValue rather than ignored, so a
// misspelt filter does not silently return everything.
func FilterFromQuery(q url.Values) (Filter, error) {
	var f Filter
	list := func(key string) []string {
		var out []string
		for _, v := range q[key] {
			for _, s := range strings.Split(v, ",") {
				if s = strings.TrimSpace(s); s != "" {
					out = append(out, s)
				}
			}
		}
		return out
	}
	for key := range q {
		switch key {
		case "image-id", "owner", "executable-by", "name", "is-public":
		default:
			return Filter{}, api.Errorf(api.CodeInvalidParameterValue, "The filter '%s' is invalid.", key)
		}
	}
	f.ImageIDs, f.Owners, f.ExecutableBy = list("image-id"), list("owner"), list("executable-by")
	f.Name = q.Get("name")
	if v := q.Get("is-public"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return Filter{}, api.Errorf(api.CodeInvalidParameterValue, "Invalid value '%s' for is-public: use true or false.", v)
		}
		f.IsPublic = &b
	}
	return f, nil
}
