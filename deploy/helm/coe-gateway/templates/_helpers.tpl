{{/* Names and labels. */}}
{{- define "coe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "coe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "coe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "coe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: coe-gateway
{{- end -}}

{{/* Selector labels of the gateway pods. */}}
{{- define "coe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{/* Resource name of one vLLM expert: `dict "root" $ "expert" $e`. */}}
{{- define "coe.vllmName" -}}
{{- printf "%s-vllm-%s" (include "coe.fullname" .root) .expert.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "coe.vllmSelectorLabels" -}}
app.kubernetes.io/name: {{ include "coe.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: vllm-expert
coe.io/expert: {{ .expert.name }}
{{- end -}}

{{- define "coe.redisName" -}}
{{- printf "%s-redis" (include "coe.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "coe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "coe.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "coe.secretName" -}}
{{- default (printf "%s-secrets" (include "coe.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* True ("true") when the registry is shared (Redis), empty when it is the SQLite file. */}}
{{- define "coe.sharedRegistry" -}}
{{- if or .Values.redis.enabled .Values.redis.externalUrl .Values.redis.externalUrlSecret.name -}}true{{- end -}}
{{- end -}}

{{/* The registry URL written into the gateway config (empty when it comes from a Secret). */}}
{{- define "coe.registryUrl" -}}
{{- if .Values.redis.externalUrlSecret.name -}}
{{- else if .Values.redis.externalUrl -}}
{{- .Values.redis.externalUrl -}}
{{- else if .Values.redis.enabled -}}
{{- printf "redis://%s:6379/0" (include "coe.redisName" .) -}}
{{- else -}}
{{- printf "sqlite://%s/registry.db" (trimSuffix "/" .Values.persistence.mountPath) -}}
{{- end -}}
{{- end -}}

{{/* Refuse settings that cannot work. */}}
{{- define "coe.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "coe.sharedRegistry" .)) -}}
{{- fail (printf "replicaCount: %d gateway replicas need a shared registry; the SQLite registry serves one replica only. Set redis.enabled=true or redis.externalUrl." (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicas) 1) (not (include "coe.sharedRegistry" .)) -}}
{{- fail "autoscaling.maxReplicas: more than one gateway replica needs a shared registry; the SQLite registry serves one replica only. Set redis.enabled=true or redis.externalUrl." -}}
{{- end -}}
{{- if and .Values.redis.enabled (or .Values.redis.externalUrl .Values.redis.externalUrlSecret.name) -}}
{{- fail "redis.enabled: choose the bundled Redis or redis.externalUrl / redis.externalUrlSecret, not both." -}}
{{- end -}}
{{- $seen := dict -}}
{{- range .Values.experts.vllm -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "experts.vllm: the expert name %q is listed twice" .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- end -}}
{{- end -}}

{{/* Names of the environment variables holding upstream API keys (sorted, unique). */}}
{{- define "coe.apiKeyEnvs" -}}
{{- $envs := list -}}
{{- range .Values.config.experts -}}
{{- if .api_key_env -}}{{- $envs = append $envs .api_key_env -}}{{- end -}}
{{- end -}}
{{- range .Values.experts.vllm -}}
{{- if .apiKeyEnv -}}{{- $envs = append $envs .apiKeyEnv -}}{{- end -}}
{{- end -}}
{{- $envs | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* The gateway configuration file (gateway/defaults.yaml's shape). */}}
{{- define "coe.gatewayConfig" -}}
{{- $cfg := omit (deepCopy .Values.config) "experts" "registry" -}}
{{- $registry := deepCopy (default dict .Values.config.registry) -}}
{{- $url := include "coe.registryUrl" . -}}
{{- if $url -}}{{- $_ := set $registry "url" $url -}}{{- end -}}
{{- $_ := set $cfg "registry" $registry -}}
{{- $experts := list -}}
{{- range .Values.config.experts -}}{{- $experts = append $experts . -}}{{- end -}}
{{- $root := . -}}
{{- range .Values.experts.vllm -}}
{{- $svc := include "coe.vllmName" (dict "root" $root "expert" .) -}}
{{- $endpoint := printf "http://%s:8000/v1" $svc -}}
{{- $e := dict "name" .name "kind" "vllm" "endpoint" $endpoint "model" (default .name .servedModelName) "categories" (default (list "*") .categories) "cost" (default 1.0 .cost) "timeout_s" (default 120 .timeoutS) "max_concurrency" (default 64 .maxConcurrency) -}}
{{- if .apiKeyEnv -}}{{- $_ := set $e "api_key_env" .apiKeyEnv -}}{{- end -}}
{{- if .systemPrompt -}}{{- $_ := set $e "system_prompt" .systemPrompt -}}{{- end -}}
{{- if .options -}}{{- $_ := set $e "options" .options -}}{{- end -}}
{{- if not $root.Values.discovery.enabled -}}{{- $experts = append $experts $e -}}{{- end -}}
{{- range ((.lora).adapters) -}}
{{- if .categories -}}
{{- $a := dict "name" .name "kind" "vllm" "endpoint" $endpoint "model" .name "categories" .categories "cost" (default 1.0 .cost) -}}
{{- $experts = append $experts $a -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "experts" $experts -}}
{{- if .Values.discovery.enabled -}}
{{- $k8s := dict "enabled" true "namespaces" (list .Release.Namespace) -}}
{{- $_ := set $cfg "discovery" (dict "kubernetes" $k8s) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
