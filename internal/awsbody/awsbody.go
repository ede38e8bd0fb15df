// Package awsbody holds one client-side workaround for aws-sdk-go-v2, shared by
// nestbot's EC2 client and the lab's: see WithoutWriterTo.
package awsbody

import (
	"context"
	"fmt"
	"io"

	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// WithoutWriterTo works around a client-side race between
// smithy-go and net/http that a nearby endpoint (the lab, on loopback) exposes on nearly every
// large response:
//
//  1. net/http's Transport writes the request body from its writeLoop
//     goroutine, then drains the rest with io.Copy(io.Discard, body).
//  2. The server has the whole body after step 1's first copy, so the
//     response can arrive, and client.Do return, before that drain runs.
//  3. smithy-go's ClientHandler closes the request body as soon as Do
//     returns. Its body wrapper for an io.WriterTo stream (the Query
//     protocol's *bytes.Reader) then answers WriteTo with io.EOF.
//  4. io.Copy passes that io.EOF on, the writeLoop takes it for a failed
//     write and closes the connection while the response body is still
//     being read: "read tcp …: use of closed network connection".
//
// Hiding WriteTo makes the drain go through Read, which ends on io.EOF as
// io.Copy expects. Seek stays, so length, signing and rewinds are unchanged.
// Remove this once smithy-go's closed WriteTo returns (0, nil).
func WithoutWriterTo(stack *middleware.Stack) error {
	if _, ok := stack.Serialize.Get(id); ok {
		return nil // already added (a client built from a config that carries it)
	}
	return stack.Serialize.Add(middleware.SerializeMiddlewareFunc(id,
		func(ctx context.Context, in middleware.SerializeInput, next middleware.SerializeHandler) (
			middleware.SerializeOutput, middleware.Metadata, error,
		) {
			req, ok := in.Request.(*smithyhttp.Request)
			if !ok {
				return next.HandleSerialize(ctx, in)
			}
			stream := req.GetStream()
			if _, ok := stream.(io.WriterTo); !ok {
				return next.HandleSerialize(ctx, in)
			}
			rs, ok := stream.(io.ReadSeeker)
			if !ok {
				return next.HandleSerialize(ctx, in)
			}
			r, err := req.SetStream(readSeeker{rs})
			if err != nil {
				return middleware.SerializeOutput{}, middleware.Metadata{},
					fmt.Errorf("awsbody: rewrap request body: %w", err)
			}
			in.Request = r
			return next.HandleSerialize(ctx, in)
		}), middleware.After)
}

const id = "nestbot.RequestBodyWithoutWriterTo"

// readSeeker exposes only Read and Seek of the stream it wraps.
type readSeeker struct{ io.ReadSeeker }
