{{/* Names */}}
{{- define "tempo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tempo.fullname" -}}
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

{{- define "tempo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tempo.labels" -}}
helm.sh/chart: {{ include "tempo.chart" . }}
app.kubernetes.io/name: {{ include "tempo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels for one component: include "tempo.selectorLabels" (list $ "gateway") */}}
{{- define "tempo.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "tempo.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "tempo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tempo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tempo.image" -}}
{{- $root := index . 0 -}}
{{- $img := index . 1 -}}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{/* Claim names */}}
{{- define "tempo.storageClaim" -}}
{{- default (printf "%s-storage" (include "tempo.fullname" .)) .Values.storage.existingClaim -}}
{{- end -}}
{{- define "tempo.modelsClaim" -}}
{{- default (printf "%s-models" (include "tempo.fullname" .)) .Values.models.existingClaim -}}
{{- end -}}

{{- define "tempo.redisName" -}}
{{- printf "%s-redis" (include "tempo.fullname" .) -}}
{{- end -}}

{{- define "tempo.configName" -}}
{{- printf "%s-config" (include "tempo.fullname" .) -}}
{{- end -}}

{{- define "tempo.apiKeysSecret" -}}
{{- default (printf "%s-api-keys" (include "tempo.fullname" .)) .Values.apiKeys.existingSecret -}}
{{- end -}}

{{/* Fail early on contradictory Redis settings. */}}
{{- define "tempo.validate" -}}
{{- if and .Values.redis.bundled.enabled .Values.redis.external.existingSecret -}}
{{- fail "redis: set either redis.bundled.enabled=true or redis.external.existingSecret, not both" -}}
{{- end -}}
{{- if and (not .Values.redis.bundled.enabled) (not .Values.redis.external.existingSecret) -}}
{{- fail "redis: set redis.external.existingSecret (Secret with the Redis URL) or enable redis.bundled" -}}
{{- end -}}
{{- if and .Values.worker.keda.enabled (eq .Values.worker.keda.trigger "redis-streams") (not .Values.redis.bundled.enabled) (not .Values.worker.keda.redisStreams.address) (not .Values.worker.keda.redisStreams.authSecret.name) -}}
{{- fail "worker.keda: with external Redis set worker.keda.redisStreams.address or .authSecret.name" -}}
{{- end -}}
{{- end -}}

{{/* A config value as an env string: whole floats as integers (no 1e+09), lists comma-joined. */}}
{{- define "tempo.envValue" -}}
{{- if kindIs "float64" . -}}
{{- if eq (float64 (int64 .)) . -}}{{- int64 . -}}{{- else -}}{{- . -}}{{- end -}}
{{- else if kindIs "slice" . -}}
{{- join "," . -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end -}}

{{/* Env shared by gateway and workers (settings the chart wires itself). */}}
{{- define "tempo.commonEnv" -}}
- name: TEMPO_REDIS_URL
{{- if .Values.redis.external.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.external.existingSecret }}
      key: {{ .Values.redis.external.secretKey }}
{{- else }}
  value: {{ printf "redis://%s:6379/0" (include "tempo.redisName" .) | quote }}
{{- end }}
- name: TEMPO_STORAGE_DIR
  value: {{ .Values.storage.mountPath | quote }}
{{- end -}}

{{- define "tempo.probe" -}}
{{- $p := index . 0 -}}
httpGet:
  path: {{ $p.path }}
  port: {{ index . 1 }}
periodSeconds: {{ $p.periodSeconds }}
timeoutSeconds: {{ $p.timeoutSeconds }}
failureThreshold: {{ $p.failureThreshold }}
{{- end -}}
