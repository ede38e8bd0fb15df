package ec2_test

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/ducksnest/nestbot/lab/ec2"
)

// TestDescribeVolumesPaging: as EC2's API reference says of DescribeVolumes,
// without MaxResults every volume comes back in one response; MaxResults
// above 500 gives pages of 500; MaxResults and VolumeIds exclude each other.
func TestDescribeVolumesPaging(t *testing.T) {
	e := setup(t)
	cx := ctx(t)
	_, subnet := network(t, e, "10.0.0.0/16", "10.0.0.0/20")
	img := seedNixOS(t, e)
	var ids []string
	for range 600 {
		in, err := e.srv.SeedInstance(ec2.InstanceSpec{ImageID: img, SubnetID: subnet})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, in.VolumeIDs...)
	}

	e.srv.ResetCalls()
	all, err := e.client.DescribeVolumes(cx, &awsec2.DescribeVolumesInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Volumes) != 600 || all.NextToken != nil || e.srv.Calls("DescribeVolumes") != 1 {
		t.Fatalf("without MaxResults: %d volumes, next token %v, %d calls; want 600 in one response",
			len(all.Volumes), aws.ToString(all.NextToken), e.srv.Calls("DescribeVolumes"))
	}

	byID, err := e.client.DescribeVolumes(cx, &awsec2.DescribeVolumesInput{VolumeIds: ids})
	if err != nil {
		t.Fatal(err)
	}
	if len(byID.Volumes) != 600 || byID.NextToken != nil {
		t.Fatalf("by 600 ids: %d volumes, next token %v", len(byID.Volumes), aws.ToString(byID.NextToken))
	}

	var pages []int
	p := awsec2.NewDescribeVolumesPaginator(e.client, &awsec2.DescribeVolumesInput{MaxResults: aws.Int32(1000)})
	for p.HasMorePages() {
		page, err := p.NextPage(cx)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, len(page.Volumes))
	}
	if len(pages) != 2 || pages[0] != 500 || pages[1] != 100 {
		t.Fatalf("MaxResults 1000 gave pages of %v, want [500 100]", pages)
	}

	_, err = e.client.DescribeVolumes(cx, &awsec2.DescribeVolumesInput{VolumeIds: ids[:1], MaxResults: aws.Int32(5)})
	wantCode(t, err, "InvalidParameterCombination")
	_, err = e.client.DescribeVolumes(cx, &awsec2.DescribeVolumesInput{MaxResults: aws.Int32(4)})
	wantCode(t, err, "InvalidParameterValue")
}
