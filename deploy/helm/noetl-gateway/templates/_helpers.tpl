{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "noetl-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full resource name: release-chart, or the release name alone when it already holds the chart name. */}}
{{- define "noetl-gateway.fullname" -}}
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

{{- define "noetl-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "noetl-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "noetl-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "noetl-gateway.labels" -}}
helm.sh/chart: {{ include "noetl-gateway.chart" . }}
{{ include "noetl-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: noetl
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "noetl-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "noetl-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret the pods read: the operator's existing one or the chart's own. */}}
{{- define "noetl-gateway.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- include "noetl-gateway.fullname" . }}
{{- end }}
{{- end }}

{{/* The port the gateway listens on (config.ROUTER_PORT, default 8090). */}}
{{- define "noetl-gateway.containerPort" -}}
{{- $port := .Values.config.ROUTER_PORT | default "8090" | toString }}
{{- if not (regexMatch "^[0-9]+$" $port) }}
{{- fail (printf "config.ROUTER_PORT must be a port number, got %q" $port) }}
{{- end }}
{{- $port | int }}
{{- end }}

{{/* One ConfigMap value as a string; a float that holds an integer (YAML 1073741824) stays integral. */}}
{{- define "noetl-gateway.configValue" -}}
{{- if and (kindIs "float64" .) (eq . (float64 (int64 .))) }}
{{- int64 . | toString }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
Refuse a grace period shorter than the gateway's own shutdown after SIGTERM: the preStop sleep,
then up to 5 s for SSE streams to take their retry hint and close (gateway/live/hub.py), then
GATEWAY_SHUTDOWN_GRACE_SECS for in-flight requests, then up to 2 s closing connections and up to
5 s draining NATS (gateway/__main__.py, gateway/nats/link.py).
*/}}
{{- define "noetl-gateway.checkGracePeriod" -}}
{{- $grace := .Values.config.GATEWAY_SHUTDOWN_GRACE_SECS | default "10" | toString | float64 | ceil | int }}
{{- $needed := add (int .Values.preStopSleepSeconds) $grace 12 }}
{{- if lt (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least preStopSleepSeconds + GATEWAY_SHUTDOWN_GRACE_SECS + 12 = %d, or SSE streams and in-flight requests are killed before they drain" (int .Values.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- end }}

{{/* Where the push-ingress listener file is mounted (pushIngress.listeners, docs/ingress.md). */}}
{{- define "noetl-gateway.ingressListenersPath" -}}
/etc/noetl-gateway/ingress/listeners.yaml
{{- end }}

{{/*
OpenTelemetry: the standard OTEL_* variables when tracing.otlpEndpoint is set (docs/observability.md).
*/}}
{{- define "noetl-gateway.tracingEnv" -}}
{{- with .Values.tracing }}
{{- if .otlpEndpoint }}
- name: OTEL_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .otlpEndpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ .serviceName | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | toString | quote }}
{{- $attributes := printf "k8s.pod.name=$(OTEL_POD_NAME),k8s.namespace.name=%s" $.Release.Namespace }}
{{- if .resourceAttributes }}
{{- $attributes = printf "%s,%s" .resourceAttributes $attributes }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ $attributes | quote }}
{{- range $name, $value := .extra }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
