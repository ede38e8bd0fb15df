package ec2_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// TestConfigRequestBodyDrainAfterSDKClose replays, without depending on
// timing, the order of events behind "use of closed network connection" on
// large responses: net/http's Transport has sent ContentLength bytes of the
// request body, the response reaches the SDK, the SDK closes the request
// body, and only then does the Transport drain the body with
// io.Copy(io.Discard, body). An error from that drain makes the Transport
// close the connection under the response body, so it must be nil.
func TestConfigRequestBodyDrainAfterSDKClose(t *testing.T) {
	e := setup(t)
	drained := make(chan error, 1)
	do := smithyhttp.ClientDoFunc(func(r *http.Request) (*http.Response, error) {
		sent, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength))
		if err != nil {
			return nil, err
		}
		fwd := r.Clone(r.Context())
		fwd.Body = io.NopCloser(bytes.NewReader(sent))
		if fwd.Host == "" {
			fwd.Host = r.URL.Host
		}
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, fwd)
		resp := rec.Result()
		// The SDK closes the request body when Do returns and the response
		// body once it has decoded it; drain the request body after that.
		var once sync.Once
		resp.Body = closeFunc{resp.Body, func() {
			once.Do(func() {
				_, err := io.Copy(io.Discard, r.Body)
				drained <- err
			})
		}}
		return resp, nil
	})
	c := e.newClient(t, func(o *awsec2.Options) { o.HTTPClient = do })
	if _, err := c.DescribeVpcs(ctx(t), &awsec2.DescribeVpcsInput{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Fatalf("draining the request body after the SDK closed it: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the SDK never closed the response body")
	}
}

// closeFunc is a response body that calls fn when closed.
type closeFunc struct {
	io.ReadCloser
	fn func()
}

func (c closeFunc) Close() error {
	c.fn()
	return c.ReadCloser.Close()
}
