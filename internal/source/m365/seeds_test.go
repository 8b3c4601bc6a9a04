package m365

var seeds = []string{
	`{"CreationTime":"2023-06-16T03:12:44","Id":"x","Operation":"MailItemsAccessed","RecordType":50,"UserId":"a@b","Folders":[{"Path":"\\Inbox","FolderItems":[{"InternetMessageId":"<m>"}]}],"AppAccessContext":{"UniqueTokenId":"t"},"OperationCount":3}`,
	`{"id":"x","createdDateTime":"2026-07-17T08:28:17Z","auditLogRecordType":"ExchangeItem","operation":"Send","auditData":{"CreationTime":"2026-07-17T08:28:17Z","Operation":"Send","RecordType":2,"Item":{"InternetMessageId":"<a>","ParentFolder":{"Path":"\\Sent"}}}}`,
	`{"TimeGenerated":"2021-08-02T13:32:07Z","Operation":"MailItemsAccessed","OfficeWorkload":"Exchange","Folders":"[{\"Path\":\"\\\\Inbox\",\"FolderItems\":[{\"InternetMessageId\":\"<x>\"}]}]"}`,
	`{"auditData":7,"auditLogRecordType":1}`,
}
