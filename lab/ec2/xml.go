package ec2

import (
	"bytes"
	"encoding/xml"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// timeFormat is how EC2 writes timestamps (launchTime, createTime, …).
const timeFormat = "2006-01-02T15:04:05.000Z"

func fmtTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// envelope is <{Action}Response xmlns=…><requestId>…</requestId>…</…>.
type envelope struct {
	XMLName   xml.Name
	Xmlns     string `xml:"xmlns,attr"`
	RequestID string `xml:"requestId"`
	Inner     []byte `xml:",innerxml"`
}

// writeResponse marshals body's fields as the children of the action's
// response element, after <requestId>.
func writeResponse(w http.ResponseWriter, action, reqID string, body any) {
	var inner []byte
	if body != nil {
		var buf bytes.Buffer
		enc := xml.NewEncoder(&buf)
		if err := enc.EncodeElement(body, xml.StartElement{Name: xml.Name{Local: "x"}}); err != nil {
			writeError(w, reqID, errf(500, "InternalError", "lab: encoding %s response: %v", action, err))
			return
		}
		inner = bytes.TrimSuffix(bytes.TrimPrefix(buf.Bytes(), []byte("<x>")), []byte("</x>"))
	}
	out, err := xml.Marshal(envelope{
		XMLName:   xml.Name{Local: action + "Response"},
		Xmlns:     xmlns,
		RequestID: reqID,
		Inner:     inner,
	})
	if err != nil {
		writeError(w, reqID, errf(500, "InternalError", "lab: encoding %s response: %v", action, err))
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("x-amzn-RequestId", reqID)
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(xml.Header))
	w.Write(out)
}

type xmlErrorResponse struct {
	XMLName   xml.Name `xml:"Response"`
	Code      string   `xml:"Errors>Error>Code"`
	Message   string   `xml:"Errors>Error>Message"`
	RequestID string   `xml:"RequestID"`
}

func writeError(w http.ResponseWriter, reqID string, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = errf(500, "InternalError", "An internal error has occurred")
	}
	out, _ := xml.Marshal(xmlErrorResponse{Code: ae.code, Message: ae.message, RequestID: reqID})
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("x-amzn-RequestId", reqID)
	w.WriteHeader(ae.status)
	w.Write([]byte(xml.Header))
	w.Write(out)
}

// set renders as <name><item>…</item>…</name>, and as <name/> when empty,
// as EC2 does for the top-level sets of Describe responses.
type set[T any] struct {
	Items []T `xml:"item"`
}

type returnResponse struct {
	Return bool `xml:"return"`
}

type xTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func tagsXML(m map[string]string) []xTag {
	if len(m) == 0 {
		return nil
	}
	keys := slices.Sorted(maps.Keys(m))
	out := make([]xTag, len(keys))
	for i, k := range keys {
		out[i] = xTag{Key: k, Value: m[k]}
	}
	return out
}

type xValue struct {
	Value string `xml:"value"`
}

type xBoolValue struct {
	Value bool `xml:"value"`
}

type xGroup struct {
	GroupID   string `xml:"groupId"`
	GroupName string `xml:"groupName"`
}

func itoa(n int) string { return strconv.Itoa(n) }
