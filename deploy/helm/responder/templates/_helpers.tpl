{{/*
The chart's name, truncated to the 63 characters a label value allows.
*/}}
{{- define "responder.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: the release name, with the chart
name appended unless the release name already contains it.
*/}}
{{- define "responder.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "responder.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "responder.labels" -}}
helm.sh/chart: {{ include "responder.chart" . }}
{{ include "responder.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "responder.selectorLabels" -}}
app.kubernetes.io/name: {{ include "responder.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "responder.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "responder.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "responder.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "responder.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "responder.fullname" .)) }}
{{- end }}

{{/*
Where things live in the pod. The config file refers to the secrets and the
runbooks by paths relative to its own directory, which responder resolves
against it: the rendered config.yml is then checked as it is, next to
secrets/ and runbooks/ directories, by the chart's tests.
*/}}
{{- define "responder.configDir" -}}/etc/responder/config{{- end }}
{{- define "responder.secretsDir" -}}/etc/responder/secrets{{- end }}
{{- define "responder.runbooksDir" -}}/etc/responder/runbooks{{- end }}
{{- define "responder.dataDir" -}}/var/lib/responder{{- end }}

{{/*
Whether the user's own config authenticates the webhook.
*/}}
{{- define "responder.userWebhookAuth" -}}
{{- $w := .Values.config.webhook | default dict }}
{{- if or (get $w "authorization") (get $w "basic_auth") }}true{{ end }}
{{- end }}

{{/*
The secrets in use, as YAML: name -> {key: the key in the Secret, file: the
file name under secrets/}. With existingSecret, a secret is used when
existingSecretKeys names its key; otherwise when its value is set. The
webhook token is always used with a chart-made Secret unless the config
authenticates the webhook itself (the chart then generates it). The
PostgreSQL password is not a file: it is the PGPASSWORD environment variable.
*/}}
{{- define "responder.secrets" -}}
{{- $files := dict "webhookToken" "webhook-token" "slackBotToken" "slack-bot-token" "slackSigningSecret" "slack-signing-secret" "pagerdutyRoutingKey" "pagerduty-routing-key" "postgresPassword" "postgres-password" }}
{{- $out := dict }}
{{- range $name, $file := $files }}
{{- if $.Values.secrets.existingSecret }}
{{- $key := index $.Values.secrets.existingSecretKeys $name | default "" }}
{{- if $key }}
{{- $_ := set $out $name (dict "key" $key "file" $file) }}
{{- end }}
{{- else if or (index $.Values.secrets $name) (and (eq $name "webhookToken") (not (include "responder.userWebhookAuth" $))) }}
{{- $_ := set $out $name (dict "key" $file "file" $file) }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
The configuration file: .Values.config with the keys the chart manages
filled in, after checking that the result can start.
*/}}
{{- define "responder.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $secrets := include "responder.secrets" . | fromYaml }}
{{- $file := dict }}
{{- range $name, $s := $secrets }}
{{- $_ := set $file $name (printf "../secrets/%s" $s.file) }}
{{- end }}

{{- /* global: the Slack secrets. */}}
{{- $global := get $cfg "global" | default dict }}
{{- if hasKey $secrets "slackBotToken" }}
{{- if or (get $global "slack_bot_token") (get $global "slack_bot_token_file") }}
{{- fail "config.global.slack_bot_token(_file) and secrets.slackBotToken are both set: use one" }}
{{- end }}
{{- $_ := set $global "slack_bot_token_file" $file.slackBotToken }}
{{- end }}
{{- if hasKey $secrets "slackSigningSecret" }}
{{- if or (get $global "slack_signing_secret") (get $global "slack_signing_secret_file") }}
{{- fail "config.global.slack_signing_secret(_file) and secrets.slackSigningSecret are both set: use one" }}
{{- end }}
{{- $_ := set $global "slack_signing_secret_file" $file.slackSigningSecret }}
{{- end }}
{{- if $global }}
{{- $_ := set $cfg "global" $global }}
{{- end }}

{{- /* storage: the DSN follows storage.type. */}}
{{- $storage := get $cfg "storage" | default dict }}
{{- if hasKey $storage "dsn" }}
{{- fail "config.storage.dsn is managed by the chart: set storage.type and storage.postgresql.dsn instead" }}
{{- end }}
{{- if eq .Values.storage.type "sqlite" }}
{{- $_ := set $storage "dsn" (printf "sqlite://%s/responder.db" (include "responder.dataDir" .)) }}
{{- else if eq .Values.storage.type "postgresql" }}
{{- $dsn := .Values.storage.postgresql.dsn }}
{{- if not $dsn }}
{{- fail "storage.type=postgresql needs storage.postgresql.dsn (postgres://user@host:5432/db?sslmode=...)" }}
{{- end }}
{{- if not (regexMatch "^postgres(ql)?://" $dsn) }}
{{- fail "storage.postgresql.dsn must start with postgres:// or postgresql://" }}
{{- end }}
{{- if regexMatch "^postgres(ql)?://[^/@]*:[^/@]*@" $dsn }}
{{- fail "storage.postgresql.dsn must not contain the password: put it in the Secret (secrets.postgresPassword or existingSecretKeys.postgresPassword)" }}
{{- end }}
{{- $_ := set $storage "dsn" $dsn }}
{{- else }}
{{- fail (printf "storage.type must be sqlite or postgresql, not %q" .Values.storage.type) }}
{{- end }}
{{- $_ := set $cfg "storage" $storage }}

{{- /* webhook: the token, unless the config authenticates itself. */}}
{{- $webhook := get $cfg "webhook" | default dict }}
{{- if include "responder.userWebhookAuth" . }}
{{- if hasKey $secrets "webhookToken" }}
{{- fail "config.webhook configures authentication and secrets.webhookToken is set too: use one" }}
{{- end }}
{{- else if hasKey $secrets "webhookToken" }}
{{- $_ := set $webhook "authorization" (dict "type" "Bearer" "credentials_file" $file.webhookToken) }}
{{- else }}
{{- fail "the webhook needs authentication (responder refuses to listen on a pod address without it): set secrets.existingSecretKeys.webhookToken, or configure config.webhook" }}
{{- end }}
{{- $_ := set $cfg "webhook" $webhook }}

{{- /* receivers: PagerDuty routing keys and Slack tokens. */}}
{{- $hasSlack := false }}
{{- range $i, $r := (get $cfg "receivers" | default list) }}
{{- if get $r "slack_configs" }}
{{- $hasSlack = true }}
{{- end }}
{{- range $j, $pd := (get $r "pagerduty_configs" | default list) }}
{{- if not (or (get $pd "routing_key") (get $pd "routing_key_file")) }}
{{- if not (hasKey $secrets "pagerdutyRoutingKey") }}
{{- fail (printf "config.receivers[%d].pagerduty_configs[%d] has no routing key: set secrets.pagerdutyRoutingKey (or existingSecretKeys.pagerdutyRoutingKey)" $i $j) }}
{{- end }}
{{- $_ := set $pd "routing_key_file" $file.pagerdutyRoutingKey }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $hasSlack (not (or (get $global "slack_bot_token") (get $global "slack_bot_token_file"))) }}
{{- fail "slack_configs need the Slack bot token: set secrets.slackBotToken (or existingSecretKeys.slackBotToken)" }}
{{- end }}

{{- /* remediation: the runbooks come from the runbooks ConfigMap. */}}
{{- $rem := get $cfg "remediation" | default dict }}
{{- if hasKey $rem "runbooks_dir" }}
{{- fail "config.remediation.runbooks_dir is managed by the chart: put runbooks in runbooks or existingRunbooksConfigMap" }}
{{- end }}
{{- $_ := set $rem "runbooks_dir" "../runbooks/" }}
{{- $_ := set $cfg "remediation" $rem }}
{{- toYaml $cfg }}
{{- end }}

{{/*
Whether remediation executes: config.remediation.enabled and not dry_run,
with responder's defaults (enabled, dry-run) for omitted keys. Kubernetes
write permissions are granted only then: a dry run changes nothing.
*/}}
{{- define "responder.remediationExecutes" -}}
{{- $rem := .Values.config.remediation | default dict }}
{{- $enabled := true }}
{{- if hasKey $rem "enabled" }}{{ $enabled = $rem.enabled }}{{ end }}
{{- $dryRun := true }}
{{- if hasKey $rem "dry_run" }}{{ $dryRun = $rem.dry_run }}{{ end }}
{{- if and $enabled (not $dryRun) }}true{{ end }}
{{- end }}

{{/*
The RBAC rules, as YAML: namespace -> list of rules. A Kubernetes action a
runbook uses is granted in the namespace its step names, or in every
namespace of config.remediation.allowed_namespaces when the step templates
it; an action listed in rbac.remediation.actions is granted in every allowed
namespace. Context reads are granted in rbac.context.namespaces (default the
same allow-list). Nothing else, and nowhere else.
*/}}
{{- define "responder.rbacRules" -}}
{{- $byAction := dict
  "rollout_restart" (list (dict "apiGroups" (list "apps") "resources" (list "deployments") "verbs" (list "patch")))
  "scale" (list (dict "apiGroups" (list "apps") "resources" (list "deployments") "verbs" (list "get" "update")))
  "delete_pod" (list (dict "apiGroups" (list "") "resources" (list "pods") "verbs" (list "delete")))
}}
{{- $rem := .Values.config.remediation | default dict }}
{{- $allowed := get $rem "allowed_namespaces" | default list }}
{{- /* action -> {namespace: where it comes from}; "" stands for every allowed namespace. */}}
{{- $grants := dict }}
{{- range .Values.rbac.remediation.actions }}
{{- $_ := set $grants . (merge (get $grants . | default dict) (dict "" "rbac.remediation.actions")) }}
{{- end }}
{{- range $name, $rb := .Values.runbooks }}
{{- range $i, $step := (get $rb "steps" | default list) }}
{{- $k := get $step "kubernetes" }}
{{- if $k }}
{{- $action := get $k "action" | toString }}
{{- $ns := get $k "namespace" | toString }}
{{- if contains "{{" $ns }}
{{- /* Templated: any allowed namespace, as responder enforces. */}}
{{- $ns = "" }}
{{- else if and $ns (not (has $ns $allowed)) }}
{{- fail (printf "runbook %s step %d uses namespace %q, which is not in config.remediation.allowed_namespaces" $name $i $ns) }}
{{- end }}
{{- $_ := set $grants $action (merge (get $grants $action | default dict) (dict $ns (printf "runbook %s" $name))) }}
{{- end }}
{{- end }}
{{- end }}
{{- $rules := dict }}
{{- if include "responder.remediationExecutes" . }}
{{- range $action, $where := $grants }}
{{- $from := values $where | sortAlpha | first }}
{{- if not (hasKey $byAction $action) }}
{{- fail (printf "%s: unknown Kubernetes action %q (want rollout_restart, scale or delete_pod)" $from $action) }}
{{- end }}
{{- if not $allowed }}
{{- fail (printf "%s uses the Kubernetes action %s: set config.remediation.allowed_namespaces, the only namespaces the chart grants it in" $from $action) }}
{{- end }}
{{- $nss := $allowed }}
{{- if not (hasKey $where "") }}
{{- $nss = keys $where | sortAlpha }}
{{- end }}
{{- range $ns := $nss }}
{{- $_ := set $rules $ns (concat (get $rules $ns | default list) (get $byAction $action)) }}
{{- end }}
{{- end }}
{{- end }}
{{- $ctx := list }}
{{- if .Values.rbac.context.deployments }}
{{- $ctx = concat $ctx (list (dict "apiGroups" (list "apps") "resources" (list "deployments") "verbs" (list "get" "list")) (dict "apiGroups" (list "apps") "resources" (list "replicasets") "verbs" (list "list"))) }}
{{- end }}
{{- if .Values.rbac.context.podLogs }}
{{- $ctx = concat $ctx (list (dict "apiGroups" (list "apps") "resources" (list "deployments") "verbs" (list "get" "list")) (dict "apiGroups" (list "") "resources" (list "pods") "verbs" (list "list")) (dict "apiGroups" (list "") "resources" (list "pods/log") "verbs" (list "get"))) }}
{{- end }}
{{- if $ctx }}
{{- $ctxNS := .Values.rbac.context.namespaces | default $allowed }}
{{- if not $ctxNS }}
{{- fail "rbac.context reads Kubernetes: set rbac.context.namespaces (or config.remediation.allowed_namespaces), the only namespaces the chart grants it in" }}
{{- end }}
{{- range $ns := $ctxNS }}
{{- $_ := set $rules $ns (concat (get $rules $ns | default list) $ctx) }}
{{- end }}
{{- end }}
{{- toYaml $rules }}
{{- end }}

{{/*
Whether the pod mounts a service account token.
*/}}
{{- define "responder.automountToken" -}}
{{- $a := .Values.serviceAccount.automountToken }}
{{- if eq (toString $a) "auto" }}
{{- $rules := include "responder.rbacRules" . | fromYaml }}
{{- if $rules }}true{{ else }}false{{ end }}
{{- else }}
{{- ternary "true" "false" (eq (toString $a) "true") }}
{{- end }}
{{- end }}

{{/*
The job label of responder's targets, which the PrometheusRule's
ResponderDown watches: prometheusRule.job, or the job the chart's
ServiceMonitor gives them. It sets no jobLabel, so the Prometheus Operator
names the job after the Service.
*/}}
{{- define "responder.alertJob" -}}
{{- .Values.prometheusRule.job | default (include "responder.fullname" .) }}
{{- end }}
