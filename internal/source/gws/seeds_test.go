package gws

var seeds = []string{
	`{"kind":"admin#reports#activity","id":{"time":"2024-03-04T08:15:30.123Z","uniqueQualifier":"1","applicationName":"login"},"actor":{"email":"a@b"},"events":[{"name":"login_success","parameters":[{"name":"login_type","value":"x"},{"name":"m","multiValue":["a","b"]}]}]}`,
	`{"id":{"time":"2024-03-04T08:15:30Z","applicationName":"gmail"},"events":[{"name":"x","parameters":[{"name":"message_id","value":"<m>"}]},{"name":"y"}]}`,
	`{"kind":"admin#reports#activity","id":{"time":"bad"},"events":[]}`,
}
