package interop_test

import (
	"archive/zip"
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/basic"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/config"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/region"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	kpssdk "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/kps/v3"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/kps/v3/model"

	"github.com/openkps/kps/internal/kpstest"
	"github.com/openkps/kps/internal/sshdtest"
)

// accessKey issues a permanent AK/SK for a user of domain Default, stored as the service stores
// them (SK sealed under the key ring).
func (s *service) accessKey(userName string) (ak, sk string) {
	s.t.Helper()
	return kpstest.AccessKey(s.t, s.main, userName)
}

// sdkClient builds the official Huawei Cloud Go SDK client exactly as a user would, changing
// nothing but the endpoint: no project ID, so the SDK discovers it by region name.
func (s *service) sdkClient(ak, sk, projectID string) *kpssdk.KpsClient {
	s.t.Helper()
	b := basic.NewCredentialsBuilder().WithAk(ak).WithSk(sk).WithIamEndpointOverride(s.base)
	if projectID != "" {
		b = b.WithProjectId(projectID)
	}
	cred, err := b.SafeBuild()
	if err != nil {
		s.t.Fatal(err)
	}
	hc, err := kpssdk.KpsClientBuilder().
		WithRegion(region.NewRegion("local-1", s.base)).
		WithCredential(cred).
		WithHttpConfig(config.DefaultHttpConfig().WithTimeout(30 * time.Second).WithHttpRoundTripper(apiClient.Transport)).
		SafeBuild()
	if err != nil {
		s.t.Fatal(err)
	}
	return kpssdk.NewKpsClient(hc)
}

// wantSDKError asserts the SDK decoded our error: status, code, message and request ID.
func wantSDKError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var e *sdkerr.ServiceResponseError
	if !errors.As(err, &e) {
		t.Fatalf("got %T %v, want a ServiceResponseError %d %s", err, err, status, code)
	}
	if e.StatusCode != status || e.ErrorCode != code || e.ErrorMessage == "" || len(e.RequestId) != 32 {
		t.Fatalf("SDK error %+v, want %d %s", e, status, code)
	}
}

func ptr[T any](v T) *T { return &v }

// TestHuaweiSDK drives all 18 KPS operations through the official Go SDK against a real
// service, authenticated with an AK/SK the service issued.
func TestHuaweiSDK(t *testing.T) {
	t.Parallel()
	s := setup(t)
	h := sshdtest.Start(t, sshdtest.Options{})
	s.addHost("web-01", h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password}})
	// Pinned: a port of the task's own (the SDK's Port below) is allowed only on a pinned server.
	s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "down-01", "address": "127.0.0.1", "port": closedPort(t),
		"host_keys": []string{strings.TrimSpace(ed25519Line(t, ""))}}})
	ak, sk := s.accessKey("admin")
	c := s.sdkClient(ak, sk, "")

	// CreateKeypair: generated and hosted, then imported.
	created, err := c.CreateKeypair(&model.CreateKeypairRequest{Body: &model.CreateKeypairRequestBody{Keypair: &model.CreateKeypairAction{
		Name: "sdk-gen", Scope: ptr(model.GetCreateKeypairActionScopeEnum().DOMAIN),
		KeyProtection: &model.KeyProtection{Encryption: &model.Encryption{Type: model.GetEncryptionTypeEnum().DEFAULT}}}}})
	if err != nil {
		t.Fatalf("CreateKeypair: %v", err)
	}
	if created.Keypair == nil || created.Keypair.PrivateKey == nil || !strings.HasPrefix(*created.Keypair.PrivateKey, "-----BEGIN RSA PRIVATE KEY-----") {
		t.Fatalf("CreateKeypair answered %v", created)
	}
	priv, pub := newEd25519(t, "sdk")
	if _, err := c.CreateKeypair(&model.CreateKeypairRequest{Body: &model.CreateKeypairRequestBody{Keypair: &model.CreateKeypairAction{
		Name: "sdk-imp", PublicKey: &pub}}}); err != nil {
		t.Fatalf("CreateKeypair (import): %v", err)
	}
	_, err = c.CreateKeypair(&model.CreateKeypairRequest{Body: &model.CreateKeypairRequestBody{Keypair: &model.CreateKeypairAction{Name: "sdk-imp", PublicKey: &pub}}})
	wantSDKError(t, err, 409, "KPS.6301")

	// BatchImportKeypair.
	_, pub2 := newEd25519(t, "b1")
	batch, err := c.BatchImportKeypair(&model.BatchImportKeypairRequest{Body: &[]model.CreateKeypairRequestBody{
		{Keypair: &model.CreateKeypairAction{Name: "sdk-b1", PublicKey: &pub2}},
		{Keypair: &model.CreateKeypairAction{Name: "sdk-imp", PublicKey: &pub2}}}})
	if err != nil || len(*batch.SucceededKeypairs) != 1 || len(*batch.FailedKeypairs) != 1 {
		t.Fatalf("BatchImportKeypair: %v %v", batch, err)
	}

	// ListKeypairs (marker pages), ListKeypairDetail (frozen_state types differ), Update.
	list, err := c.ListKeypairs(&model.ListKeypairsRequest{Limit: ptr("2")})
	if err != nil || len(*list.Keypairs) != 2 || list.PageInfo.NextMarker == nil {
		t.Fatalf("ListKeypairs: %v %v", list, err)
	}
	list, err = c.ListKeypairs(&model.ListKeypairsRequest{Limit: ptr("2"), Marker: list.PageInfo.NextMarker})
	if err != nil || len(*list.Keypairs) != 1 || list.PageInfo.NextMarker != nil || *(*list.Keypairs)[0].Keypair.FrozenState != "0" {
		t.Fatalf("ListKeypairs page 2: %v %v", list, err)
	}
	if _, err := c.UpdateKeypairDescription(&model.UpdateKeypairDescriptionRequest{KeypairName: "sdk-imp",
		Body: &model.UpdateKeypairDescriptionRequestBody{Keypair: &model.UpdateKeypairDescriptionReq{Description: "via SDK"}}}); err != nil {
		t.Fatalf("UpdateKeypairDescription: %v", err)
	}
	detail, err := c.ListKeypairDetail(&model.ListKeypairDetailRequest{KeypairName: "sdk-imp"})
	if err != nil || *detail.Keypair.Description != "via SDK" || *detail.Keypair.FrozenState != 0 || *detail.Keypair.Algorithm != "ED25519" {
		t.Fatalf("ListKeypairDetail: %v %v", detail, err)
	}
	_, err = c.ListKeypairDetail(&model.ListKeypairDetailRequest{KeypairName: "nope"})
	wantSDKError(t, err, 404, "KPS.6201")

	// Hosted private keys: import, export, batch export, clear.
	if _, err := c.ImportPrivateKey(&model.ImportPrivateKeyRequest{Body: &model.ImportPrivateKeyRequestBody{Keypair: &model.ImportPrivateKeyKeypairBean{
		Name: "sdk-imp", KeyProtection: &model.ImportPrivateKeyProtection{PrivateKey: priv,
			Encryption: &model.Encryption{Type: model.GetEncryptionTypeEnum().DEFAULT}}}}}); err != nil {
		t.Fatalf("ImportPrivateKey: %v", err)
	}
	exp, err := c.ExportPrivateKey(&model.ExportPrivateKeyRequest{Body: &model.ExportPrivateKeyRequestBody{Keypair: &model.KeypairBean{Name: "sdk-imp"}}})
	if err != nil || exp.Keypair.PrivateKey != priv {
		t.Fatalf("ExportPrivateKey: %v", err)
	}
	zipped, err := c.BatchExportPrivateKey(&model.BatchExportPrivateKeyRequest{Body: &[]model.Keypairs{
		{Keypair: &model.Keypair{Name: ptr("sdk-imp")}}, {Keypair: &model.Keypair{Name: ptr("sdk-gen")}}}})
	if err != nil || zipped.Body == nil {
		t.Fatalf("BatchExportPrivateKey: %v", err)
	}
	zr, err := zip.NewReader(bytes.NewReader([]byte(*zipped.Body)), int64(len(*zipped.Body)))
	if err != nil || len(zr.File) != 2 || zr.File[0].Name != "sdk-imp.pem" {
		t.Fatalf("zip from the SDK: %v", err)
	}
	if _, err := c.ClearPrivateKey(&model.ClearPrivateKeyRequest{KeypairName: "sdk-imp"}); err != nil {
		t.Fatalf("ClearPrivateKey: %v", err)
	}
	_, err = c.ExportPrivateKey(&model.ExportPrivateKeyRequest{Body: &model.ExportPrivateKeyRequestBody{Keypair: &model.KeypairBean{Name: "sdk-imp"}}})
	wantSDKError(t, err, 400, "KPS.6018")

	// AssociateKeypair (reset with the service credential) on a real host, ListKeypairTask.
	assoc, err := c.AssociateKeypair(&model.AssociateKeypairRequest{Body: &model.AssociateKeypairRequestBody{KeypairName: "sdk-gen", Server: &model.EcsServerInfo{Id: "web-01"}}})
	if err != nil || assoc.TaskId == nil {
		t.Fatalf("AssociateKeypair: %v %v", assoc, err)
	}
	status := waitSDKTask(t, c, *assoc.TaskId)
	if status != "SUCCESS_RESET" {
		t.Fatalf("bind through the SDK ended %s", status)
	}
	// BatchAssociateKeypair: one refused item (already bound), one task that fails on the host.
	ba, err := c.BatchAssociateKeypair(&model.BatchAssociateKeypairRequest{Body: &model.BatchAssociateKeypairRequestBody{BatchKeypairs: []model.AssociateKeypairRequestBody{
		{KeypairName: "sdk-gen", Server: &model.EcsServerInfo{Id: "web-01"}},
		{KeypairName: "sdk-gen", Server: &model.EcsServerInfo{Id: "down-01", Port: ptr(int64(closedPort(t))),
			Auth: &model.Auth{Type: ptr(model.GetAuthTypeEnum().PASSWORD), Key: ptr("pw")}}}}}})
	if err != nil || len(*ba.Tasks) != 2 || *(*ba.Tasks)[0].ErrorCode != "KPS.6303" || (*ba.Tasks)[1].TaskId == nil {
		t.Fatalf("BatchAssociateKeypair: %v %v", ba, err)
	}
	failedID := *(*ba.Tasks)[1].TaskId
	running, err := c.ListRunningTask(&model.ListRunningTaskRequest{Limit: ptr(int32(10)), Offset: ptr(int32(0))})
	if err != nil || running.Total == nil {
		t.Fatalf("ListRunningTask: %v %v", running, err)
	}
	if st := waitSDKTask(t, c, failedID); st != "FAILED_REPLACE" {
		t.Fatalf("the task on a closed port ended %s", st)
	}
	failed, err := c.ListFailedTask(&model.ListFailedTaskRequest{Limit: ptr(int32(10)), Offset: ptr(int32(0))})
	if err != nil || *failed.Total != 1 || *(*failed.Tasks)[0].TaskErrorCode != "KPS.6601" || *(*failed.Tasks)[0].TaskId != failedID {
		t.Fatalf("ListFailedTask: %v %v", failed, err)
	}
	if _, err := c.DeleteFailedTask(&model.DeleteFailedTaskRequest{TaskId: failedID}); err != nil {
		t.Fatalf("DeleteFailedTask: %v", err)
	}
	_, err = c.DeleteFailedTask(&model.DeleteFailedTaskRequest{TaskId: failedID})
	wantSDKError(t, err, 404, "KPS.6203")
	if _, err := c.DeleteAllFailedTask(&model.DeleteAllFailedTaskRequest{}); err != nil {
		t.Fatalf("DeleteAllFailedTask: %v", err)
	}
	// DisassociateKeypair with the service credential; then the key pair can be deleted.
	dis, err := c.DisassociateKeypair(&model.DisassociateKeypairRequest{Body: &model.DisassociateKeypairRequestBody{Server: &model.DisassociateEcsServerInfo{Id: "web-01"}}})
	if err != nil || waitSDKTask(t, c, *dis.TaskId) != "SUCCESS_UNBIND" {
		t.Fatalf("DisassociateKeypair: %v", err)
	}
	if _, err := c.DeleteKeypair(&model.DeleteKeypairRequest{KeypairName: "sdk-gen"}); err != nil {
		t.Fatalf("DeleteKeypair: %v", err)
	}
	_, err = c.DeleteKeypair(&model.DeleteKeypairRequest{KeypairName: "sdk-gen"})
	wantSDKError(t, err, 404, "KPS.6201")

	// A wrong SK is 401; a foreign project is 403.
	_, err = s.sdkClient(ak, sk[:39]+"x", s.project).ListFailedTask(&model.ListFailedTaskRequest{})
	wantSDKError(t, err, 401, "KPS.6102")
	_, err = s.sdkClient(ak, sk, strings.Repeat("ab", 16)).ListFailedTask(&model.ListFailedTaskRequest{})
	wantSDKError(t, err, 403, "KPS.9006")
}

func waitSDKTask(t *testing.T, c *kpssdk.KpsClient, id string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		r, err := c.ListKeypairTask(&model.ListKeypairTaskRequest{TaskId: id})
		if err != nil {
			t.Fatalf("ListKeypairTask: %v", err)
		}
		st := r.TaskStatus.Value()
		if strings.HasPrefix(st, "SUCCESS_") || strings.HasPrefix(st, "FAILED_") {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("task %s did not end", id)
	return ""
}
